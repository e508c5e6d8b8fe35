"""Usage statistics from the hourly rollups: over time, by model, by action, with cost.

Nothing here scans raw events. Buckets are local to the requested time zone (days, weeks
from Monday, months); since rollups are hourly, a zone whose offset is not a whole number
of hours cannot be bucketed exactly and is refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorCode, InvalidInput
from core.orgs import Organization
from limits import repository

MAX_BUCKETS = 2_000


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
    if start.tzinfo is None or end.tzinfo is None:
        raise StatsError("from and to need a time zone offset", "from")
    start, end = floor_hour(start), floor_hour(end)
    if end <= start:
        raise StatsError("to must be at least an hour after from", "to")
    buckets = list(_buckets(start, end, granularity, tz))
    if len(buckets) > MAX_BUCKETS:
        raise StatsError(
            f"{len(buckets)} buckets asked; at most {MAX_BUCKETS}: use a coarser granularity",
            "granularity",
        )
    _check_whole_hours(tz, [start, end, *(b.replace(tzinfo=tz) for b in buckets)])
    rows = await repository.rollup_totals(
        session, organization.id, resource, start, end, granularity.value, timezone
    )
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
