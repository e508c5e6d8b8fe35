"""The demo organization: its invoices come from real period closes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing import repository
from core.clock import FrozenClock
from core.config import Settings
from core.migrate import upgrade
from tally.demo.seed import ensure_demo
from tally.runtime import build_runtime


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
