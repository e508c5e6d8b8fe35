"""Statistics from the rollups agree exactly with a brute-force sum over the raw events, in
every zone whose offset is a multiple of 15 minutes, across its daylight saving days."""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from limits import UsageInput
from limits.models import UsageEventRow
from limits.stats import Granularity, StatsError, UsageStats, rollup_spans, usage_stats
from tally.runtime import Runtime
from tests.limits.conftest import open_tiny
from tests.support import at, graphql, usage_events

pytestmark = pytest.mark.anyio

NOW = at(2026, 12, 1)
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "in-house-llm", None]
ACTIONS = ["chat_reply", "summary", "embedding", None]
DST_DAYS = {
    "UTC": [],
    "Europe/Paris": [date(2026, 3, 29), date(2026, 10, 25)],
    "Asia/Kolkata": [],
    "Asia/Kathmandu": [],
    "Australia/Adelaide": [date(2026, 4, 5), date(2026, 10, 4)],
    "America/St_Johns": [date(2026, 3, 8), date(2026, 11, 1)],
    "Australia/Lord_Howe": [date(2026, 4, 5), date(2026, 10, 4)],
}
"""The local days of 2026 on which each zone's offset changes."""
BUSY_DAYS = [date(2026, 3, 29), date(2026, 10, 25)]
"""Days with dense usage in zones without daylight saving time."""


def offset_changes(tz: ZoneInfo, day: date) -> bool:
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    return midnight.utcoffset() != (midnight + timedelta(days=1)).utcoffset()


async def seed(runtime: Runtime, clock: FrozenClock, zone: str) -> OpenedAccount:
    """~2,500 events of random models and actions: one every few minutes for two days each
    side of the zone's busy days, some on quarter-hour boundaries and a microsecond before
    them, some given in other offsets; and a few a day from February to November."""
    clock.set(NOW)
    account = await open_tiny(runtime, plan="soft")
    rng = random.Random(zlib.crc32(zone.encode()))
    tz = ZoneInfo(zone)
    instants: list[datetime] = []
    for day in DST_DAYS[zone] or BUSY_DAYS:
        instant = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        instant -= timedelta(days=2)
        while instant < datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=2):
            instants.append(instant)
            if len(instants) % 10 == 0:
                instants += [
                    floor_quarter(instant),
                    floor_quarter(instant) - timedelta(microseconds=1),
                ]
            instant += timedelta(minutes=rng.randint(1, 9), seconds=rng.randint(0, 59))
    for days in range((at(2026, 11, 20) - at(2026, 2, 1)).days):
        for _ in range(3):
            instants.append(at(2026, 2, 1) + timedelta(days=days, seconds=rng.randrange(86_400)))
    events = []
    for index, instant in enumerate(instants):
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
        if index % 7 == 0:
            instant = instant.astimezone(ZoneInfo(rng.choice(list(DST_DAYS))))
        events.append(UsageInput("tokens", amount, f"e{index}", instant, attributes))
    for start in range(0, len(events), 500):
        async with runtime.db.write() as session:
            await runtime.engine.record(session, account.organization, events[start : start + 500])
    return account


def floor_quarter(instant: datetime) -> datetime:
    instant = instant.astimezone(UTC)
    return instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)


def bucket_key(instant: datetime, granularity: Granularity, tz: ZoneInfo) -> tuple[date, int]:
    """The local bucket holding `instant` (its first day, and hour by hour), computed from its
    local time alone."""
    local = instant.astimezone(tz)
    if granularity is Granularity.HOUR:
        return (local.date(), local.hour)
    if granularity is Granularity.DAY:
        return (local.date(), 0)
    if granularity is Granularity.WEEK:
        return (local.date() - timedelta(days=local.weekday()), 0)
    return (date(local.year, local.month, 1), 0)


def assert_matches_brute_force(
    stats: UsageStats,
    rows: list[UsageEventRow],
    window: tuple[datetime, datetime],
    granularity: Granularity,
    tz: ZoneInfo,
) -> int:
    """Compares `stats` with sums over the raw events in the window (its bounds rounded down
    to the quarter hour); returns how many events were inside."""
    low, high = (floor_quarter(b if b.tzinfo else b.replace(tzinfo=tz)) for b in window)
    assert (stats.start, stats.end) == (low, high)
    inside = [r for r in rows if low <= r.occurred_at < high]
    series: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0])
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
    keys = [bucket_key(p.start, granularity, tz) for p in stats.over_time]
    quarters = (high - low) // timedelta(minutes=15)
    every_bucket = {
        bucket_key(low + timedelta(minutes=15 * q), granularity, tz) for q in range(quarters)
    }
    assert keys == sorted(every_bucket), "one point per local bucket, in order"
    assert [p.start for p in stats.over_time] == sorted({p.start for p in stats.over_time})
    assert all(p.start.tzinfo is not None for p in stats.over_time)
    points = {key: [p.amount, p.cost_micros] for key, p in zip(keys, stats.over_time, strict=True)}
    assert {k: v for k, v in points.items() if v != [0, 0]} == dict(series)
    assert {s.key: [s.amount, s.cost_micros, not s.priced] for s in stats.by_model} == {
        k: [a, c, bool(u)] for k, (a, c, u) in by_model.items()
    }
    assert {s.key: [s.amount, s.cost_micros] for s in stats.by_action} == dict(by_action)
    assert stats.unpriced_models == sorted(
        (k for k, (_, _, u) in by_model.items() if u), key=lambda k: (-by_model[k][0], k)
    )
    if inside:
        assert abs(sum(s.share for s in stats.by_model) - 1) < 1e-4
    return len(inside)


def windows(zone: str) -> list[tuple[Granularity, datetime, datetime]]:
    """Windows over each busy day by hour, day and week, with bounds off the quarter hour, on
    local midnights or given as local times; and February to November by day, week, month."""
    tz = ZoneInfo(zone)
    chosen = []
    for day in DST_DAYS[zone] or BUSY_DAYS:
        midnight = datetime(day.year, day.month, day.day)
        chosen += [
            (Granularity.HOUR, midnight.replace(tzinfo=tz) - timedelta(hours=7, minutes=13),
             midnight.replace(tzinfo=tz) + timedelta(days=1, hours=5, seconds=1)),
            (Granularity.HOUR, midnight - timedelta(hours=1), midnight + timedelta(hours=26)),
            (Granularity.DAY, midnight - timedelta(days=1), midnight + timedelta(days=2)),
            (Granularity.DAY, (midnight - timedelta(days=1, minutes=20)).replace(tzinfo=UTC),
             (midnight + timedelta(days=1, hours=17, minutes=31)).replace(tzinfo=UTC)),
            (Granularity.WEEK, midnight - timedelta(days=9), midnight + timedelta(days=9)),
        ]  # fmt: skip
    chosen += [
        (Granularity.DAY, datetime(2026, 2, 20), datetime(2026, 11, 10)),
        (Granularity.WEEK, at(2026, 2, 20, 3, 7), at(2026, 11, 10, 20, 59)),
        (Granularity.MONTH, datetime(2026, 2, 14, 9), datetime(2026, 11, 20)),
    ]
    return chosen


@pytest.mark.parametrize("zone", list(DST_DAYS))
async def test_stats_match_a_brute_force_sum_over_raw_events(
    runtime: Runtime, clock: FrozenClock, zone: str
) -> None:
    tz = ZoneInfo(zone)
    assert all(offset_changes(tz, day) for day in DST_DAYS[zone])
    account = await seed(runtime, clock, zone)
    async with runtime.db.read() as session:
        rows = await usage_events(session, account.organization.id)
        for granularity, start, end in windows(zone):
            stats = await usage_stats(
                session, account.organization, resource="tokens", start=start, end=end,
                granularity=granularity, timezone=zone, currency="USD",
            )  # fmt: skip
            counted = assert_matches_brute_force(stats, rows, (start, end), granularity, tz)
            assert 50 < counted < len(rows), (granularity, start, end)


async def test_a_day_in_paris_spans_23_hours_when_the_clocks_go_forward(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    async with runtime.db.read() as session:
        stats = await usage_stats(
            session, account.organization, resource="tokens",
            start=at(2026, 3, 28), end=at(2026, 3, 31),
            granularity=Granularity.DAY, timezone="Europe/Paris", currency="USD",
        )  # fmt: skip
    assert [p.start.isoformat() for p in stats.over_time] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]


async def test_lord_howe_days_last_23_and_a_half_and_24_and_a_half_hours(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    lengths = []
    async with runtime.db.read() as session:
        for day in DST_DAYS["Australia/Lord_Howe"]:
            stats = await usage_stats(
                session, account.organization, resource="tokens",
                start=datetime(day.year, day.month, day.day),
                end=datetime(day.year, day.month, day.day + 2),
                granularity=Granularity.DAY, timezone="Australia/Lord_Howe", currency="USD",
            )  # fmt: skip
            first, second = (p.start for p in stats.over_time)
            lengths.append(second.astimezone(UTC) - first.astimezone(UTC))
    assert lengths == [timedelta(hours=24, minutes=30), timedelta(hours=23, minutes=30)]


@pytest.mark.parametrize(
    ("start", "end", "rows"),
    [
        (at(2026, 3, 2), at(2026, 3, 9), {1440: 7}),
        (at(2026, 3, 1, 23), at(2026, 3, 2, 23), {60: 24}),
        (at(2026, 3, 1, 18, 30), at(2026, 3, 2, 18, 30), {15: 4, 60: 23}),
        (at(2026, 3, 1, 18, 15), at(2026, 3, 9, 18, 15), {15: 4, 60: 23, 1440: 7}),
        (at(2026, 3, 1, 18, 15), at(2026, 3, 1, 18, 45), {15: 2}),
    ],
)
def test_a_window_is_read_as_the_fewest_rollup_rows(
    start: datetime, end: datetime, rows: dict[int, int]
) -> None:
    spans = sorted(rollup_spans(3, start, end), key=lambda span: span.start)
    assert {span.slot for span in spans} == {3}
    counts: dict[int, int] = defaultdict(int)
    for span in spans:
        assert span.start % span.grain == span.end % span.grain == 0, "whole rollup buckets"
        counts[span.grain] += (span.end - span.start) // span.grain
    assert dict(counts) == rows
    minutes = [(instant - at(1970, 1, 1)) // timedelta(minutes=1) for instant in (start, end)]
    assert [spans[0].start, spans[-1].end] == minutes, "minutes from the Unix epoch"
    assert all(a.end == b.start for a, b in pairwise(spans))


@pytest.mark.parametrize(
    ("zone", "start", "message"),
    [
        ("Africa/Monrovia", at(1971, 6, 1), "UTC-0:44:30 on 1971-05-31"),
        ("Mars/Olympus", at(2026, 3, 1), "unknown time zone"),
    ],
)
async def test_zones_that_cannot_be_bucketed_exactly_are_refused(
    runtime: Runtime, clock: FrozenClock, zone: str, start: datetime, message: str
) -> None:
    account = await open_tiny(runtime)
    with pytest.raises(StatsError, match=message) as refused:
        async with runtime.db.read() as session:
            await usage_stats(
                session, account.organization, resource="tokens",
                start=start, end=start + timedelta(days=1),
                granularity=Granularity.DAY, timezone=zone, currency="USD",
            )  # fmt: skip
    assert refused.value.field == "timezone"


async def test_monrovia_is_answered_once_its_offset_is_whole(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    async with runtime.db.read() as session:
        stats = await usage_stats(
            session, account.organization, resource="tokens",
            start=datetime(1972, 2, 1), end=datetime(1972, 2, 3),
            granularity=Granularity.DAY, timezone="Africa/Monrovia", currency="USD",
        )  # fmt: skip
    assert [p.start.isoformat() for p in stats.over_time] == [
        "1972-02-01T00:00:00+00:00",
        "1972-02-02T00:00:00+00:00",
    ]


async def test_an_empty_or_reversed_window_is_refused(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    instant = at(2026, 3, 1)
    for end in (instant, instant + timedelta(minutes=14)):
        with pytest.raises(StatsError, match="at least 15 minutes"):
            async with runtime.db.read() as session:
                await usage_stats(
                    session, account.organization, resource="tokens", start=instant, end=end,
                    granularity=Granularity.DAY, timezone="UTC", currency="USD",
                )  # fmt: skip


STATS = """query($from: DateTime!, $to: DateTime!) { organization {
  usageStats(from: $from, to: $to, granularity: HOUR, timezone: "Asia/Kathmandu") {
    from to totalTokens totalCost { formatted } tokensOverTime { start tokens cost { formatted } }
    byModel { key tokens cost { formatted } } } } }"""


async def test_kathmandu_hours_over_graphql(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient
) -> None:
    clock.set(NOW)
    account = await open_tiny(runtime, plan="soft")
    instants = [at(2026, 3, 1, 18, 14, 59), at(2026, 3, 1, 18, 15), at(2026, 3, 1, 19, 14)]
    async with runtime.db.write() as session:
        await runtime.engine.record(
            session,
            account.organization,
            [
                UsageInput("tokens", 10 ** (index + 5), f"k{index}", instant, {"model": "gpt-4o"})
                for index, instant in enumerate(instants)
            ],
        )
    body = await graphql(
        client, account.owner_api_key, STATS, {"from": "2026-03-02", "to": "2026-03-02T02:00"}
    )
    stats = body["data"]["organization"]["usageStats"]
    cost = stats["totalCost"]
    assert cost["formatted"] not in ("$0.00", "€0.00"), cost
    assert stats == {
        "from": "2026-03-01T18:15:00+00:00",
        "to": "2026-03-01T20:15:00+00:00",
        "totalTokens": 11_000_000,
        "totalCost": cost,
        "tokensOverTime": [
            {"start": "2026-03-02T00:00:00+05:45", "tokens": 11_000_000, "cost": cost},
            {"start": "2026-03-02T01:00:00+05:45", "tokens": 0, "cost": {"formatted": "$0.00"}},
        ],
        "byModel": [{"key": "gpt-4o", "tokens": 11_000_000, "cost": cost}],
    }
