"""Usage statistics from the rollups: over time, by model, by action, with cost.

Nothing here scans raw events. Buckets are local to the requested time zone (hours, days,
weeks from Monday, months), their boundaries computed once for the range and converted to
UTC. Rollups are kept per quarter hour, hour and UTC day (`limits.models.ROLLUP_GRAINS`), so
each bucket is read as the fewest rollup rows that tile it: the whole UTC days inside it,
then the whole hours inside it but outside those days, then the quarter hours left. That is
exact in every zone whose offset is a multiple of 15 minutes (Asia/Kolkata, Asia/Kathmandu,
Australia/Lord_Howe's 30-minute daylight saving time); a range where the zone's offset is
not (Africa/Monrovia before 1972) is refused. Over time reads the totals; by model and by
action read the detailed rollups over the whole window, tiled the same way.

The work is bounded: a range is at most `MAX_RANGE` long and gives at most `MAX_BUCKETS`
buckets, both checked by arithmetic before any bucket is enumerated; many buckets are laid
out in a worker thread, off the event loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorCode, InvalidInput
from core.orgs import Organization
from limits import repository
from limits.models import ROLLUP_GRAINS, rollup_bucket
from limits.repository import RollupBreakdown, RollupSpan

MAX_BUCKETS = 2_000
"""The most buckets one answer holds (2,000 hours is about 83 days by hour)."""
MAX_RANGE = timedelta(days=3_660)
"""The longest range statistics cover: about ten years."""
FIRST_YEAR, LAST_YEAR = 1970, 9000
"""The years `from` and `to` may fall in."""
THREAD_ABOVE_BUCKETS = 200
"""Answers of more buckets than this are laid out in a worker thread, off the event loop
(2,000 hours take tens of milliseconds)."""
QUARTER = ROLLUP_GRAINS[0]
"""The finest rollup, in minutes: `from` and `to` are rounded down to it."""
_QUARTER = timedelta(minutes=QUARTER)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_LONGEST_BUCKET = {
    "hour": timedelta(hours=1),
    "day": timedelta(hours=25),
    "week": timedelta(days=7, hours=1),
    "month": timedelta(days=31, hours=1),
}
"""The longest bucket of each granularity (a day may last 25 hours): a range holding more
than `MAX_BUCKETS` of these is refused before its buckets are enumerated."""


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class StatsError(InvalidInput):
    """A statistics request that cannot be answered as asked; `field` names the argument."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message, field=field)


@dataclass(frozen=True)
class UsagePoint:
    start: datetime
    amount: int
    cost_micros: int


@dataclass(frozen=True)
class UsageShare:
    key: str
    amount: int
    cost_micros: int
    share: float
    priced: bool


@dataclass(frozen=True)
class UsageStats:
    """Totals and breakdowns of a resource between `start` (included) and `end` (excluded)."""

    start: datetime
    end: datetime
    currency: str
    total_amount: int
    total_cost_micros: int
    over_time: list[UsagePoint]
    by_model: list[UsageShare]
    by_action: list[UsageShare]

    @property
    def unpriced_models(self) -> list[str]:
        return [share.key for share in self.by_model if not share.priced]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatsError(
            f"unknown time zone {name!r} (use an IANA name like 'Europe/Paris')", "timezone"
        ) from None


def _local_start(local: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket holding a naive local time."""
    hour = local.replace(minute=0, second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return hour
    day = hour.replace(hour=0)
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_start(bucket: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.HOUR:
        return bucket + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return bucket + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return bucket + timedelta(days=7)
    year, month = divmod(bucket.year * 12 + bucket.month, 12)
    return bucket.replace(year=year, month=month + 1)


def bucket_starts(
    start: datetime, end: datetime, granularity: Granularity, tz: ZoneInfo
) -> list[datetime]:
    """The UTC starts of the local buckets overlapping [start, end), in order (the first may
    begin before `start`). A local hour that does not exist (skipped when the clocks go
    forward) starts where the next one does, and is left out."""
    starts: list[datetime] = []
    local = _local_start(start.astimezone(tz).replace(tzinfo=None), granularity)
    while len(starts) <= MAX_BUCKETS:
        instant = local.replace(tzinfo=tz).astimezone(UTC)
        if instant >= end:
            return starts
        if not starts or instant > starts[-1]:
            starts.append(instant)
        local = _next_start(local, granularity)
    raise StatsError(
        f"over {MAX_BUCKETS} buckets asked; at most {MAX_BUCKETS}: use a coarser granularity",
        "granularity",
    )


def rollup_spans(slot: int, start: datetime, end: datetime) -> list[RollupSpan]:
    """[start, end) (quarter-hour instants) as the fewest rollup rows, counted towards
    `slot`: the whole UTC days inside it, then the whole hours outside those days, then the
    quarter hours left."""
    return [
        RollupSpan(slot, grain, low, high)
        for grain, low, high in _tile(_minutes(start), _minutes(end), _COARSEST_FIRST)
    ]


_COARSEST_FIRST = tuple(sorted(ROLLUP_GRAINS, reverse=True))


def _minutes(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(minutes=1)


def _tile(start: int, end: int, grains: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """[start, end) in minutes from the epoch as (grain, start, end) runs of whole buckets."""
    if start >= end:
        return []
    grain, finer = grains[0], grains[1:]
    if not finer:
        return [(grain, start, end)]
    first, last = -(-start // grain) * grain, end // grain * grain
    if first >= last:
        return _tile(start, end, finer)
    return [*_tile(start, first, finer), (grain, first, last), *_tile(last, end, finer)]


def _check_quarter_hours(
    tz: ZoneInfo, start: datetime, end: datetime, boundaries: Sequence[datetime]
) -> None:
    """Refuses a range where the zone's offset is not a multiple of 15 minutes: at `start` or
    `end`, or at a bucket boundary, which then falls off the quarter hours the rollups can
    cut at."""
    for instant in (start, end, *boundaries):
        offset = instant.astimezone(tz).utcoffset() or timedelta()
        if offset % _QUARTER or (instant - _EPOCH) % _QUARTER:
            sign = "-" if offset < timedelta() else "+"
            raise StatsError(
                f"time zone {tz.key} is UTC{sign}{abs(offset)} on "
                f"{instant.astimezone(tz).date().isoformat()}: usage is kept per quarter "
                "hour, so statistics are exact only where a zone's offset is a multiple of "
                "15 minutes; ask for a later range or another time zone",
                "timezone",
            )


async def usage_stats(
    session: AsyncSession,
    organization: Organization,
    *,
    resource: str,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    timezone: str,
    currency: str,
) -> UsageStats:
    """Statistics of `resource`; `start` and `end` are rounded down to the quarter hour."""
    tz = zone(timezone)
    start, end = _instant(start, tz, "from"), _instant(end, tz, "to")
    if end <= start:
        raise StatsError(f"to must be at least {QUARTER} minutes after from", "to")
    if end - start > MAX_RANGE:
        raise StatsError(
            f"from {start.isoformat()} to {end.isoformat()} is over the longest range of "
            f"{MAX_RANGE.days} days: ask for a shorter range",
            "to",
        )
    if (end - start) // _LONGEST_BUCKET[granularity.value] > MAX_BUCKETS:
        raise StatsError(
            f"{granularity.value} buckets from {start.isoformat()} to {end.isoformat()} are "
            f"over the limit of {MAX_BUCKETS} buckets: use a coarser granularity or a "
            "shorter range",
            "granularity",
        )
    if (end - start) // _LONGEST_BUCKET[granularity.value] > THREAD_ABOVE_BUCKETS:
        labels, spans = await anyio.to_thread.run_sync(_layout, start, end, granularity, tz)
    else:
        labels, spans = _layout(start, end, granularity, tz)
    totals = await repository.rollup_totals(session, organization.id, resource, spans)
    breakdown = await repository.rollup_breakdown(
        session, organization.id, resource, rollup_spans(0, start, end)
    )
    over_time = [UsagePoint(label, *totals.get(slot, (0, 0))) for slot, label in enumerate(labels)]
    total = sum(point.amount for point in over_time)
    by_model, by_action = _breakdowns(breakdown, total)
    return UsageStats(
        start=start,
        end=end,
        currency=currency,
        total_amount=total,
        total_cost_micros=sum(point.cost_micros for point in over_time),
        over_time=over_time,
        by_model=by_model,
        by_action=by_action,
    )


def _layout(
    start: datetime, end: datetime, granularity: Granularity, tz: ZoneInfo
) -> tuple[list[datetime], list[RollupSpan]]:
    """The buckets' starts in `tz`, and the rollup spans that tile them (slot i: bucket i,
    clipped to [start, end)). Pure computation: it may run in a worker thread."""
    starts = bucket_starts(start, end, granularity, tz)
    _check_quarter_hours(tz, start, end, starts[1:])
    bounds = [start, *starts[1:], end]
    spans = [
        span
        for slot, (low, high) in enumerate(pairwise(bounds))
        for span in rollup_spans(slot, low, high)
    ]
    return [bucket.astimezone(tz) for bucket in starts], spans


def _instant(value: datetime, tz: ZoneInfo, field: str) -> datetime:
    """`value` rounded down to the quarter hour, in UTC; a time without an offset (a date
    alone, `2026-11-28`, is its midnight) is a local time in `tz`."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise StatsError(
            f"{field} {value.isoformat()} is out of range: years {FIRST_YEAR} to {LAST_YEAR}",
            field,
        )
    aware = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return rollup_bucket(aware, QUARTER)


def _breakdowns(
    rows: Sequence[RollupBreakdown], total: int
) -> tuple[list[UsageShare], list[UsageShare]]:
    """Shares by model and by action from the (model, action) sums."""
    models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    actions: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for model, action, *sums in rows:
        for table, key in ((models, model), (actions, action)):
            for index, value in enumerate(sums):
                table[key][index] += value
    return _shares(models, total), _shares(actions, total)


def _shares(table: dict[str, list[int]], total: int) -> list[UsageShare]:
    shares = [
        UsageShare(
            key or "unknown",
            amount,
            cost,
            round(amount / total, 6) if total else 0.0,
            unpriced == 0,
        )
        for key, (amount, cost, unpriced) in table.items()
    ]
    return sorted(shares, key=lambda share: (-share.amount, share.key))
