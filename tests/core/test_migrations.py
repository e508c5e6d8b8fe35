"""The migrations build exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import billing.models
import core.audit.models
import core.orgs.models
import limits.models
from core.db import driver_url
from core.migrate import upgrade


def test_models_and_migrations_agree(database_url: str) -> None:
    assert billing.models and limits.models and core.orgs.models and core.audit.models
    upgrade(database_url)
    engine = create_engine(driver_url(database_url, asynchronous=False))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()
