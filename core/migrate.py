"""Database migrations (Alembic), run in code by `tally migrate` and `tally serve`.

The revisions are the `migrations` package's files (its alembic.ini, env.py and versions/),
found by resource name: no import of it, nor of any package of the project but `core`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files

from alembic import command
from alembic.config import Config

MIGRATIONS_PACKAGE = "migrations"


@contextmanager
def alembic_config(database_url: str) -> Iterator[Config]:
    """Alembic's configuration from the packaged alembic.ini, pointed at `database_url`."""
    with as_file(files(MIGRATIONS_PACKAGE)) as directory:
        ini = directory / "alembic.ini"
        if not (ini.is_file() and (directory / "env.py").is_file()):
            raise RuntimeError(f"{directory} is not Tally's migrations package")
        config = Config(str(ini))
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        yield config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema."""
    with alembic_config(database_url) as config:
        command.upgrade(config, "head")
