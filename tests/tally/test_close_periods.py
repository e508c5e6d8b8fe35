"""`tally close-periods` as cron runs it, and the demo's real invoices."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from billing import repository
from billing.accounts import open_account
from limits import LimitEngine
from tally.clock import FrozenClock, SystemClock
from tally.config import Settings
from tally.demo import ensure_demo
from tally.migrate import upgrade
from tally.runtime import build_runtime
from tests.tally.test_cli import tally


def open_in_the_past(database_url: str, opened_at: datetime) -> str:
    async def run() -> str:
        runtime = build_runtime(Settings(database_url=database_url))
        try:
            engine = LimitEngine(runtime.engine.plugins, FrozenClock(opened_at))
            async with runtime.db.write() as session:
                account = await open_account(
                    session, engine, runtime.catalog, name="Old", plan_id="growth",
                    owner_email="old@example.com", anchor_day=1,
                )  # fmt: skip
            return account.organization.id
        finally:
            await runtime.db.dispose()

    return asyncio.run(run())


def test_close_periods_bills_each_ended_period_once(empty_database_url: str) -> None:
    assert tally("migrate", database_url=empty_database_url).returncode == 0
    now = SystemClock().now()
    opened_at = datetime(now.year - 1, now.month, 1, 12, tzinfo=UTC)
    organization_id = open_in_the_past(empty_database_url, opened_at)
    first = tally("close-periods", database_url=empty_database_url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[-1] == "closed 12 period(s)"
    prefix = organization_id[:8].upper()
    assert lines[0].startswith(f"{organization_id}  {opened_at.date()} to ")
    assert f"invoice {prefix}-0001 " in lines[0]
    assert f"invoice {prefix}-0012 €228.00" in lines[11]
    again = tally("close-periods", database_url=empty_database_url)
    assert (again.returncode, again.stdout) == (0, "no period to close\n")


@pytest.mark.anyio
async def test_the_demo_shows_invoices_from_real_period_closes(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    runtime = build_runtime(
        Settings(database_url=empty_database_url), FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
    )
    try:
        demo = await ensure_demo(runtime)
        assert demo is not None
        async with runtime.db.read() as session:
            invoices = await repository.list_invoices(session, demo.organization_id, 10)
    finally:
        await runtime.db.dispose()
    assert [(i.period_start, i.number[-4:]) for i in invoices] == [
        (datetime(2026, 2, 1).date(), "0003"),
        (datetime(2026, 1, 1).date(), "0002"),
        (datetime(2025, 12, 1).date(), "0001"),
    ]
    assert invoices[0].total_minor == 226_800
    assert invoices[0].document is not None
    assert invoices[0].document["buyer"]["name"] == "Acme Shop SAS"
