"""Statistics from rollups agree with a brute-force sum over the raw events."""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from limits import UsageInput
from limits.models import UsageEventRow
from limits.stats import Granularity, StatsError, usage_stats
from tally.runtime import Runtime
from tests.limits.conftest import open_tiny

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 4, 5, tzinfo=UTC)
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "in-house-llm", None]
ACTIONS = ["chat_reply", "summary", "embedding", None]


async def seed(runtime: Runtime, clock: FrozenClock, seed: int) -> OpenedAccount:
    clock.set(NOW)
    account = await open_tiny(runtime, plan="soft")
    rng = random.Random(seed)
    span = int((NOW - datetime(2026, 3, 1, tzinfo=UTC)).total_seconds())
    events = []
    for i in range(400):
        attributes: dict[str, object] = {}
        model, action = rng.choice(MODELS), rng.choice(ACTIONS)
        if model:
            attributes["model"] = model
        if action:
            attributes["action"] = action
        amount = rng.randint(1, 5_000)
        if rng.random() < 0.5:
            attributes["input_tokens"] = rng.randint(0, amount)
            attributes["output_tokens"] = amount - int(attributes["input_tokens"])  # type: ignore[call-overload]
        when = NOW - timedelta(seconds=rng.randint(1, span))
        events.append(UsageInput("tokens", amount, f"e{i}", when, attributes))
    for start in range(0, len(events), 100):
        async with runtime.db.write() as session:
            await runtime.engine.record(session, account.organization, events[start : start + 100])
    return account


def bucket_key(instant: datetime, granularity: Granularity, tz: ZoneInfo) -> object:
    local = instant.astimezone(tz)
    if granularity is Granularity.HOUR:
        return (local.date(), local.hour)
    if granularity is Granularity.DAY:
        return local.date()
    if granularity is Granularity.WEEK:
        return local.date() - timedelta(days=local.weekday())
    return date(local.year, local.month, 1)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"])
@pytest.mark.parametrize("granularity", list(Granularity))
async def test_stats_match_a_brute_force_sum_over_raw_events(
    runtime: Runtime, clock: FrozenClock, zone: str, granularity: Granularity
) -> None:
    account = await seed(runtime, clock, seed=zlib.crc32(f"{zone}{granularity}".encode()))
    start = datetime(2026, 3, 4, 5, 17, tzinfo=UTC)
    end = datetime(2026, 4, 3, 19, 40, tzinfo=UTC)
    async with runtime.db.read() as session:
        stats = await usage_stats(
            session, account.organization, resource="tokens", start=start, end=end,
            granularity=granularity, timezone=zone, currency="USD",
        )  # fmt: skip
        rows = (
            (
                await session.execute(
                    select(UsageEventRow).where(
                        UsageEventRow.organization_id == account.organization.id  # type: ignore[arg-type]
                    )
                )
            )
            .scalars()
            .all()
        )
    tz = ZoneInfo(zone)
    low, high = start.replace(minute=0), end.replace(minute=0)
    inside = [
        r for r in rows if low <= r.occurred_at.replace(minute=0, second=0, microsecond=0) < high
    ]
    assert 100 < len(inside) < len(rows)
    series: dict[object, list[int]] = defaultdict(lambda: [0, 0])
    by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_action: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in inside:
        cost = row.cost_micros or 0
        series[bucket_key(row.occurred_at, granularity, tz)][0] += row.amount
        series[bucket_key(row.occurred_at, granularity, tz)][1] += cost
        by_model[row.model or "unknown"][0] += row.amount
        by_model[row.model or "unknown"][1] += cost
        by_model[row.model or "unknown"][2] += row.cost_micros is None
        by_action[row.action or "unknown"][0] += row.amount
        by_action[row.action or "unknown"][1] += cost
    assert stats.total_amount == sum(r.amount for r in inside)
    assert stats.total_cost_micros == sum(r.cost_micros or 0 for r in inside)
    points = {
        bucket_key(p.start, granularity, tz): [p.amount, p.cost_micros] for p in stats.over_time
    }
    assert len(points) == len(stats.over_time), "buckets are distinct"
    assert {k: v for k, v in points.items() if v != [0, 0]} == dict(series)
    assert all(p.start.tzinfo is not None for p in stats.over_time)
    assert {s.key: [s.amount, s.cost_micros, not s.priced] for s in stats.by_model} == {
        k: [a, c, bool(u)] for k, (a, c, u) in by_model.items()
    }
    assert {s.key: [s.amount, s.cost_micros] for s in stats.by_action} == dict(by_action)
    assert stats.unpriced_models == sorted(
        (k for k, (_, _, u) in by_model.items() if u), key=lambda k: (-by_model[k][0], k)
    )
    assert abs(sum(s.share for s in stats.by_model) - 1) < 1e-4


async def test_a_day_in_paris_spans_23_hours_when_the_clocks_go_forward(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await seed(runtime, clock, seed=1)
    async with runtime.db.read() as session:
        stats = await usage_stats(
            session, account.organization, resource="tokens",
            start=datetime(2026, 3, 28, tzinfo=UTC), end=datetime(2026, 3, 31, tzinfo=UTC),
            granularity=Granularity.DAY, timezone="Europe/Paris", currency="USD",
        )  # fmt: skip
    starts = [p.start for p in stats.over_time]
    assert [s.isoformat() for s in starts] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]


@pytest.mark.parametrize(
    ("zone", "message"),
    [("Asia/Kolkata", "whole number of hours"), ("Mars/Olympus", "unknown time zone")],
)
async def test_zones_that_cannot_be_bucketed_exactly_are_refused(
    runtime: Runtime, clock: FrozenClock, zone: str, message: str
) -> None:
    account = await open_tiny(runtime)
    with pytest.raises(StatsError, match=message):
        async with runtime.db.read() as session:
            await usage_stats(
                session, account.organization, resource="tokens",
                start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC),
                granularity=Granularity.DAY, timezone=zone, currency="USD",
            )  # fmt: skip


async def test_an_empty_or_reversed_window_is_refused(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    instant = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(StatsError, match="at least an hour"):
        async with runtime.db.read() as session:
            await usage_stats(
                session, account.organization, resource="tokens", start=instant, end=instant,
                granularity=Granularity.DAY, timezone="UTC", currency="USD",
            )  # fmt: skip
