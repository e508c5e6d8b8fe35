"""Alembic environment: Tally's tables, on the URL from `tally migrate` or TALLY_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import billing.models
import core.audit.models
import core.orgs.models
import limits.models
from core.config import Settings
from core.db import driver_url

assert billing.models and limits.models and core.orgs.models

target_metadata = SQLModel.metadata
url = context.config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations() -> None:
    engine = create_engine(driver_url(url, asynchronous=False), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
