"""GraphQL of usage statistics and alerts, on the Organization type."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import Parent

import billing
from graph.billing import Money
from graph.errors import bad_input
from graph.permissions import Info, member
from graph.scalars import BigInt
from limits import repository as limits_repository
from limits.periods import GAUGE_EPOCH
from limits.stats import Granularity as StatsGranularity
from limits.stats import StatsError, usage_stats
from tally.orgs import Organization as OrganizationRow


def _money(micros: int, currency: str) -> Money:
    minor = Decimal(micros).scaleb(billing.money.minor_digits(currency) - 6)
    rounded = int(minor.to_integral_value(rounding=ROUND_HALF_UP))
    return Money.of(billing.Money(rounded, currency))


@strawberry.enum
class Granularity(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.type(description="Tokens and their cost in one time bucket.")
class UsagePoint:
    start: dt.datetime
    tokens: BigInt
    cost: Money


@strawberry.type(description="A model's or an action's part of the tokens and cost.")
class UsageShare:
    key: str
    tokens: BigInt
    cost: Money
    share: float = strawberry.field(description="Fraction of all tokens, 0 to 1.")
    priced: bool = strawberry.field(description="False when the model has no price: cost 0.")


@strawberry.type(description="AI token usage and cost, from hourly rollups.")
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


@strawberry.type(description="A usage threshold crossed (once per period and threshold).")
class UsageAlert:
    resource: str
    threshold: int = strawberry.field(description="Percent of the limit.")
    used: BigInt
    limit: BigInt
    period_start: dt.datetime
    crossed_at: dt.datetime


async def _usage_stats(
    root: Parent[OrganizationRow],
    info: Info,
    start: Annotated[dt.datetime, strawberry.argument(name="from")],
    end: Annotated[dt.datetime, strawberry.argument(name="to")],
    granularity: Granularity | None = Granularity.DAY,
    timezone: str | None = "UTC",
) -> UsageStats:
    granularity = granularity or Granularity.DAY
    timezone = timezone or "UTC"
    member(info)
    runtime = info.context.runtime
    currency = runtime.engine.prices.currency
    try:
        async with runtime.db.read() as session:
            stats = await usage_stats(
                session,
                root,
                resource="tokens",
                start=start,
                end=end,
                granularity=StatsGranularity(granularity.value),
                timezone=timezone,
                currency=currency,
            )
    except StatsError as error:
        raise bad_input(str(error)) from None

    def share(value: Any) -> UsageShare:
        return UsageShare(
            key=value.key,
            tokens=BigInt(value.amount),
            cost=_money(value.cost_micros, currency),
            share=value.share,
            priced=value.priced,
        )

    return UsageStats(
        start=stats.start,
        end=stats.end,
        timezone=timezone,
        total_tokens=BigInt(stats.total_amount),
        total_cost=_money(stats.total_cost_micros, currency),
        tokens_over_time=[
            UsagePoint(start=p.start, tokens=BigInt(p.amount), cost=_money(p.cost_micros, currency))
            for p in stats.over_time
        ],
        by_model=[share(s) for s in stats.by_model],
        by_action=[share(s) for s in stats.by_action],
        unpriced_models=stats.unpriced_models,
    )


async def _alerts(root: Parent[OrganizationRow], info: Info) -> list[UsageAlert]:
    runtime = info.context.runtime
    period = runtime.engine.period(root)
    async with runtime.db.read() as session:
        rows = await limits_repository.list_alerts(session, root.id, [period.start, GAUGE_EPOCH])
    return [
        UsageAlert(
            resource=row.resource,
            threshold=row.threshold,
            used=BigInt(row.used),
            limit=BigInt(row.limit_value),
            period_start=row.period_start,
            crossed_at=row.crossed_at,
        )
        for row in rows
    ]


def organization_fields() -> dict[str, Any]:
    """The statistics and alerts of `Organization`."""
    return {
        "usage_stats": strawberry.field(resolver=_usage_stats),
        "alerts": strawberry.field(
            resolver=_alerts, description="Thresholds crossed this period, newest first."
        ),
    }
