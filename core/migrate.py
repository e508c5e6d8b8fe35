"""Database migrations (Alembic), run in code by `tally migrate` and `tally serve`.

The revisions are the `migrations` package's files (its alembic.ini, env.py and versions/),
found by resource name: no import of it, nor of any package of the project but `core`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from core.db import dialect_of, driver_url

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


FUNCTIONS_DIRECTORY = "functions"


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema, then (PostgreSQL) install the functions.

    Tables change through revisions; the database functions (`migrations/functions/*.sql`,
    each a `CREATE OR REPLACE FUNCTION`) are code that ships with the Python calling them, so
    every upgrade installs the current ones, in the same transaction."""
    with alembic_config(database_url) as config:
        command.upgrade(config, "head")
    if dialect_of(database_url) != "postgresql":
        return
    engine = create_engine(driver_url(database_url, asynchronous=False), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for function in database_functions():
                connection.exec_driver_sql(function)
    finally:
        engine.dispose()


def database_functions() -> list[str]:
    """The text of each database function's file, by file name."""
    directory = files(MIGRATIONS_PACKAGE) / FUNCTIONS_DIRECTORY
    chosen = sorted(
        (entry for entry in directory.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [entry.read_text(encoding="utf-8") for entry in chosen]
