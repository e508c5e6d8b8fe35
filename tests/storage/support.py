"""Helpers of the storage tests: a fresh database of their own (they start and remove epochs,
which a shared database's other tests would feel), months from now, synchronous reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from billing.accounts import OpenedAccount, open_account
from core.clock import FrozenClock
from core.config import Settings
from core.db import driver_url
from core.migrate import upgrade
from tally.runtime import Runtime, build_runtime


def month_start(months_from_now: int) -> datetime:
    """The first instant of a month after (or before) the current one, in UTC: the tests run
    after the epoch the migration started (that of the real month they run in)."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + months_from_now
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@asynccontextmanager
async def fresh_runtime(url: str, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """A runtime on a newly migrated database at `url`."""
    upgrade(url)
    runtime = build_runtime(Settings(database_url=url), clock)
    try:
        yield runtime
    finally:
        await runtime.db.dispose()


async def open_org(runtime: Runtime, name: str = "Storage Org") -> OpenedAccount:
    async with runtime.db.write() as session:
        return await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name=name,
            plan_id="ecommerce-enterprise",
            owner_email="owner@example.com",
            anchor_day=1,
        )


def read(url: str, query: str, **parameters: Any) -> list[Any]:
    engine = sa.create_engine(driver_url(url, asynchronous=False))
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query), parameters))
    finally:
        engine.dispose()


def partitions(url: str) -> set[str]:
    """The partitions of `usage_events` (PostgreSQL)."""
    rows = read(
        url,
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage_events'::regclass",
    )
    return {row[0] for row in rows}
