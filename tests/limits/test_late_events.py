"""The event's own time decides its period; a late event within the grace window counts
in its own period, a later one in the current period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.clock import FrozenClock
from limits import UsageRejected
from tally.runtime import Runtime
from tests.limits.conftest import consume, open_tiny

pytestmark = pytest.mark.anyio

APRIL = datetime(2026, 4, 1, tzinfo=UTC)


async def counters(runtime: Runtime, account: object) -> tuple[int, int]:
    async with runtime.db.read() as session:
        march = await runtime.engine.usage(session, account.organization, APRIL - timedelta(days=1))  # type: ignore[attr-defined]
        april = await runtime.engine.usage(session, account.organization, APRIL)  # type: ignore[attr-defined]
    return march.get("tokens").used, april.get("tokens").used


async def test_a_late_event_within_the_grace_window_counts_in_its_own_period(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    clock.set(APRIL + timedelta(minutes=59))
    late = APRIL - timedelta(seconds=1)
    await consume(runtime, account, "tokens", 7, "late", occurred_at=late)
    await consume(runtime, account, "tokens", 5, "now")
    assert await counters(runtime, account) == (7, 5)


async def test_after_the_grace_window_a_late_event_counts_now(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    clock.set(APRIL + timedelta(hours=1, seconds=1))
    await consume(runtime, account, "tokens", 7, "late", occurred_at=APRIL - timedelta(hours=2))
    assert await counters(runtime, account) == (0, 7)


async def test_the_own_period_is_limited_on_its_own(runtime: Runtime, clock: FrozenClock) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 100, "march-full")
    clock.set(APRIL + timedelta(minutes=10))
    refused = await consume(
        runtime, account, "tokens", 1, "late", occurred_at=APRIL - timedelta(minutes=1)
    )
    assert refused.status == "rejected"
    assert (await consume(runtime, account, "tokens", 100, "april")).status == "accepted"


@pytest.mark.parametrize(
    ("occurred_at", "code"),
    [
        (datetime(2026, 3, 15, 13, 0, tzinfo=UTC), "INVALID_TIMESTAMP"),
        (datetime(2026, 3, 15, 12, 0), "INVALID_TIMESTAMP"),
    ],
)
async def test_future_or_naive_timestamps_are_refused(
    runtime: Runtime, occurred_at: datetime, code: str
) -> None:
    account = await open_tiny(runtime)
    with pytest.raises(UsageRejected) as caught:
        await consume(runtime, account, "tokens", 1, "t", occurred_at=occurred_at)
    assert caught.value.code == code
