"""`tally close-periods` as cron runs it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from billing.accounts import open_account
from core.clock import FrozenClock, SystemClock
from core.config import Settings
from limits import LimitEngine
from tally.runtime import build_runtime
from tests.tally.test_cli import tally

GRACE = timedelta(seconds=3600)


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
    # The period that ended on the 1st stays open through its grace window (an hour).
    in_grace = now - now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) < GRACE
    closed = 11 if in_grace else 12
    assert f"closed {closed} period(s)" in lines
    assert lines[0].startswith(f"{organization_id}  {opened_at.date()} to ")
    assert f"invoice TAL-{opened_at.year}-000001 " in lines[0]
    assert "€228.00" in lines[closed - 1]
    numbers = [line.split("invoice ")[1].split(" ")[0] for line in lines[:closed]]
    assert len(set(numbers)) == closed and all(n.startswith("TAL-") for n in numbers)
    [overdue] = [line for line in lines if "overdue:" in line]
    assert overdue.startswith(f"{organization_id}  overdue: TAL-{opened_at.year}-000001")
    again = tally("close-periods", database_url=empty_database_url)
    assert again.returncode == 0, again.stderr
    assert "no period to close" in again.stdout.splitlines()
