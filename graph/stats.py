"""GraphQL of usage statistics and alerts, on the Organization type."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

import strawberry
from strawberry import Parent

import billing
from core.orgs import Organization as OrganizationRow
from graph.billing import Money
from graph.enums import Granularity
from graph.permissions import Info
from graph.scalars import BigInt
from limits.stats import MAX_BUCKETS, MAX_RANGE
from limits.stats import UsagePoint as StatsPoint
from limits.stats import UsageShare as StatsShare
from limits.stats import UsageStats as Stats


def _money(micros: int, currency: str) -> Money:
    minor = Decimal(micros).scaleb(billing.money.minor_digits(currency) - 6)
    rounded = int(minor.to_integral_value(rounding=ROUND_HALF_UP))
    return Money.of(billing.Money(rounded, currency))


def _cost(root: Parent[UsagePoint | UsageShare]) -> Money:
    """Formatted only when asked for (Babel's formatting is most of a big answer's time)."""
    return _money(root.cost_micros, root.currency)


@strawberry.type(description="Tokens and their cost in one time bucket.")
class UsagePoint:
    start: dt.datetime
    tokens: BigInt
    cost: Money = strawberry.field(resolver=_cost)
    cost_micros: strawberry.Private[int]
    currency: strawberry.Private[str]


@strawberry.type(description="A model's or an action's part of the tokens and cost.")
class UsageShare:
    key: str
    tokens: BigInt
    cost: Money = strawberry.field(resolver=_cost)
    cost_micros: strawberry.Private[int]
    currency: strawberry.Private[str]
    share: float = strawberry.field(description="Fraction of all tokens, 0 to 1.")
    priced: bool = strawberry.field(description="False when the model has no price: cost 0.")


@strawberry.type(description="AI token usage and cost, from the usage rollups.")
class UsageStats:
    start: dt.datetime = strawberry.field(name="from")
    end: dt.datetime = strawberry.field(name="to")
    timezone: str
    total_tokens: BigInt
    total_cost: Money
    tokens_over_time: list[UsagePoint]
    by_model: list[UsageShare]
    by_action: list[UsageShare]
    unpriced_models: list[str]

    @classmethod
    def of(cls, stats: Stats, timezone: str) -> UsageStats:
        currency = stats.currency
        return cls(
            start=stats.start,
            end=stats.end,
            timezone=timezone,
            total_tokens=BigInt(stats.total_amount),
            total_cost=_money(stats.total_cost_micros, currency),
            tokens_over_time=[_point(p, currency) for p in stats.over_time],
            by_model=[_share(s, currency) for s in stats.by_model],
            by_action=[_share(s, currency) for s in stats.by_action],
            unpriced_models=stats.unpriced_models,
        )


@strawberry.type(
    description="A usage threshold crossed: once per period and threshold for a metered "
    "resource; for a gauge, each time its count reaches the threshold from below."
)
class UsageAlert:
    resource: str
    threshold: int = strawberry.field(description="Percent of the limit.")
    used: BigInt
    limit: BigInt
    period_start: dt.datetime = strawberry.field(
        description="The billing period's start; for a gauge (no period), the crossing instant."
    )
    crossed_at: dt.datetime


def _share(value: StatsShare, currency: str) -> UsageShare:
    return UsageShare(
        key=value.key,
        tokens=BigInt(value.amount),
        cost_micros=value.cost_micros,
        currency=currency,
        share=value.share,
        priced=value.priced,
    )


def _point(point: StatsPoint, currency: str) -> UsagePoint:
    return UsagePoint(
        start=point.start,
        tokens=BigInt(point.amount),
        cost_micros=point.cost_micros,
        currency=currency,
    )


_FROM = (
    "The start, rounded down to the quarter hour: ISO 8601 with an offset (2026-11-28T00:00Z), "
    "or without one (2026-11-28, 2026-11-28T09:00) for a local time in `timezone`."
)
_TO = f"The end (excluded), written like `from`: at most {MAX_RANGE.days} days after it."
_GRANULARITY = f"The bucket size (default DAY): at most {MAX_BUCKETS} buckets in the range."
_TIMEZONE = (
    "An IANA time zone (default UTC); refused where its offset is not a multiple of 15 minutes."
)


async def _usage_stats(
    root: Parent[OrganizationRow],
    info: Info,
    start: Annotated[dt.datetime, strawberry.argument(name="from", description=_FROM)],
    end: Annotated[dt.datetime, strawberry.argument(name="to", description=_TO)],
    granularity: Annotated[
        Granularity | None, strawberry.argument(description=_GRANULARITY)
    ] = Granularity.DAY,
    timezone: Annotated[str | None, strawberry.argument(description=_TIMEZONE)] = "UTC",
) -> UsageStats | None:
    """Tokens and cost between `from` and `to`, bucketed in `timezone`; null, with an error
    naming the argument and the limit, when they cannot be answered (the organization is
    not nulled with it)."""
    timezone = timezone or "UTC"
    stats = await info.context.services.usage.statistics(
        root, resource="tokens", start=start, end=end,
        granularity=granularity or Granularity.DAY, timezone=timezone,
    )  # fmt: skip
    return UsageStats.of(stats, timezone)


async def _alerts(root: Parent[OrganizationRow], info: Info) -> list[UsageAlert]:
    return [
        UsageAlert(
            resource=row.resource,
            threshold=row.threshold,
            used=BigInt(row.used),
            limit=BigInt(row.limit_value),
            period_start=row.period_start,
            crossed_at=row.crossed_at,
        )
        for row in await info.context.services.usage.alerts(root)
    ]


def organization_fields() -> dict[str, Any]:
    """The statistics and alerts of `Organization`."""
    return {
        "usage_stats": strawberry.field(resolver=_usage_stats),
        "alerts": strawberry.field(
            resolver=_alerts, description="Thresholds crossed this period, newest first."
        ),
    }
