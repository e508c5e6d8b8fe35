"""Usage statistics from the hourly rollups: over time, by model, by action, with cost.

Nothing here scans raw events. Buckets are local to the requested time zone (days, weeks
from Monday, months); since rollups are hourly, a zone whose offset is not a whole number
of hours cannot be bucketed exactly and is refused.

The work is bounded: a range is at most `MAX_RANGE` long and gives at most `MAX_BUCKETS`
buckets, both checked by arithmetic before any bucket is enumerated; a big answer is
assembled in a worker thread, off the event loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorCode, InvalidInput
from core.orgs import Organization
from limits import repository

MAX_BUCKETS = 2_000
"""The most buckets one answer holds (2,000 hours is about 83 days by hour)."""
MAX_RANGE = timedelta(days=3_660)
"""The longest range statistics cover: about ten years."""
FIRST_YEAR, LAST_YEAR = 1970, 9000
"""The years `from` and `to` may fall in."""
THREAD_ABOVE_ROWS = 2_000
"""Answers assembled from more rollup rows than this are assembled in a worker thread."""

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


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def local_bucket(local: datetime, granularity: Granularity) -> datetime:
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


def _next_bucket(bucket: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.HOUR:
        return bucket + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return bucket + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return bucket + timedelta(days=7)
    year, month = divmod(bucket.year * 12 + bucket.month, 12)
    return bucket.replace(year=year, month=month + 1)


def _buckets(
    start: datetime, end: datetime, granularity: Granularity, tz: ZoneInfo
) -> Iterator[datetime]:
    bucket = local_bucket(start.astimezone(tz).replace(tzinfo=None), granularity)
    last = end.astimezone(tz).replace(tzinfo=None)
    while bucket < last:
        yield bucket
        bucket = _next_bucket(bucket, granularity)


def _check_whole_hours(tz: ZoneInfo, instants: list[datetime]) -> None:
    for instant in instants:
        offset = instant.astimezone(tz).utcoffset() or timedelta()
        if offset % timedelta(hours=1):
            raise StatsError(
                f"time zone {tz.key} is {offset} from UTC: hourly statistics can only be "
                "bucketed in zones whose offset is a whole number of hours",
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
    """Statistics of `resource`; `start` and `end` are rounded down to the hour."""
    tz = zone(timezone)
    start, end = _instant(start, tz, "from"), _instant(end, tz, "to")
    if end <= start:
        raise StatsError("to must be at least an hour after from", "to")
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
    rows = await repository.rollup_totals(
        session, organization.id, resource, start, end, granularity.value, timezone
    )
    if len(rows) > THREAD_ABOVE_ROWS:
        return await anyio.to_thread.run_sync(
            _assemble, rows, start, end, granularity, tz, currency
        )
    return _assemble(rows, start, end, granularity, tz, currency)


def _instant(value: datetime, tz: ZoneInfo, field: str) -> datetime:
    """`value` rounded down to the hour, in UTC; a time without an offset (a date alone,
    `2026-11-28`, is its midnight) is a local time in `tz`."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise StatsError(
            f"{field} {value.isoformat()} is out of range: years {FIRST_YEAR} to {LAST_YEAR}",
            field,
        )
    return floor_hour(value if value.tzinfo is not None else value.replace(tzinfo=tz))


def _assemble(
    rows: Sequence[Any],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    tz: ZoneInfo,
    currency: str,
) -> UsageStats:
    """The answer from the rollup rows (pure computation: it may run in a worker thread)."""
    buckets = list(_buckets(start, end, granularity, tz))
    if len(buckets) > MAX_BUCKETS:
        raise StatsError(
            f"{len(buckets)} buckets asked; at most {MAX_BUCKETS}: use a coarser granularity",
            "granularity",
        )
    _check_whole_hours(tz, [start, end, *(b.replace(tzinfo=tz) for b in buckets)])
    series: dict[datetime, list[int]] = {bucket: [0, 0] for bucket in buckets}
    models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    actions: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for when, model, action, amount, cost, unpriced in rows:
        local = when if when.tzinfo is None else when.astimezone(tz).replace(tzinfo=None)
        point = series.setdefault(local_bucket(local, granularity), [0, 0])
        point[0] += amount
        point[1] += cost
        for table, key in ((models, model), (actions, action)):
            table[key][0] += amount
            table[key][1] += cost
            table[key][2] += unpriced
    total = sum(amount for amount, _ in series.values())
    return UsageStats(
        start=start,
        end=end,
        currency=currency,
        total_amount=total,
        total_cost_micros=sum(cost for _, cost in series.values()),
        over_time=[
            UsagePoint(bucket.replace(tzinfo=tz), amount, cost)
            for bucket, (amount, cost) in sorted(series.items())
        ],
        by_model=_shares(models, total),
        by_action=_shares(actions, total),
    )


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
