"""Plan recommendations: the plans that fit the organization's usage, cheapest first."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from billing.catalog import Catalog, Plan
from limits import Limit, ResourceUsage, UsageSnapshot
from limits.display import format_amount

HEADROOM = Fraction(8, 10)
"""A resource fits a plan when its projection stays within this share of the limit."""
MIN_ELAPSED = timedelta(days=1)
"""Burn rates are measured over at least this long, so an early spike does not explode."""
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Reason:
    """How one resource fares on a plan: its projection against the plan's limit.

    `included` is False for a resource the plan does not list while other plans do (a
    partner's resource added to some plans only): the plan does not offer it, so it fits only
    when the organization does not use it.
    """

    resource: str
    projected: int
    limit: int | None
    fits: bool
    message: str
    included: bool = True


@dataclass(frozen=True)
class Recommendation:
    """A plan, whether it fits, whether it is the current one, and why.

    `unlimited_resources` are the resources (among the organization's meters) that the plan
    leaves without a limit.
    """

    plan: Plan
    current: bool
    fits: bool
    recommended: bool
    reasons: tuple[Reason, ...]
    unlimited_resources: tuple[str, ...] = ()


def projected(
    meter: ResourceUsage, usage: UsageSnapshot, now: datetime, started_at: datetime | None = None
) -> int:
    """Metered usage projected to the period's end from its burn rate; gauges as they are.

    The burn rate is measured from the period's start, or from `started_at` (the
    organization's opening) when that falls within the period, and over `MIN_ELAPSED` at least.
    """
    if not meter.resource.resets:
        return meter.used
    period = usage.period
    since = period.start if started_at is None else min(max(started_at, period.start), period.end)
    elapsed = max(min(now, period.end) - since, MIN_ELAPSED)
    remaining = period.end - since
    return int(Fraction(meter.used * (remaining // _MICROSECOND), elapsed // _MICROSECOND))


def recommend(
    catalog: Catalog,
    current_plan_id: str,
    usage: UsageSnapshot,
    now: datetime,
    *,
    started_at: datetime | None = None,
    currency: str | None = None,
) -> list[Recommendation]:
    """The plans that fit with headroom, cheapest first, and the current plan (marked) even
    when it does not fit; the cheapest fitting plan is `recommended`.

    `started_at` is when the organization opened (its burn rate is measured from then when it
    opened during the period); with a `currency`, only the plans offered in it are listed
    (the current plan always), ranked by their price in it.
    """
    projections = {
        meter.resource.key: projected(meter, usage, now, started_at) for meter in usage.resources
    }
    listed = {key for plan in catalog for key in plan.limits}
    candidates = []
    for plan in catalog:
        current = plan.id == current_plan_id
        if currency is not None and not plan.offers(currency) and not current:
            continue
        reasons = tuple(
            _reason(plan, meter, projections[meter.resource.key], listed)
            for meter in usage.resources
        )
        fits = all(reason.fits for reason in reasons)
        if fits or current:
            unlimited = tuple(
                reason.resource for reason in reasons if reason.included and reason.limit is None
            )
            candidates.append((plan, current, fits, reasons, unlimited))
    if currency is not None:
        candidates.sort(key=lambda item: (_price_in(item[0], currency), item[0].id))
    cheapest = next((plan.id for plan, _, fits, _, _ in candidates if fits), None)
    return [
        Recommendation(plan, current, fits, plan.id == cheapest, reasons, unlimited)
        for plan, current, fits, reasons, unlimited in candidates
    ]


def _price_in(plan: Plan, currency: str) -> int:
    if plan.offers(currency):
        return plan.price(currency).amount_minor
    return plan.price_monthly.amount_minor


def _reason(plan: Plan, meter: ResourceUsage, amount: int, listed: Set[str]) -> Reason:
    resource = meter.resource
    verb = "projected " if resource.resets else ""
    used = format_amount(amount, resource.display)
    if (
        resource.key not in plan.limits
        and resource.default_limit is None
        and resource.key in listed
    ):
        message = f"{resource.key}: {verb}{used}, not included in {plan.name}"
        return Reason(resource.key, amount, 0, amount == 0, message, included=False)
    limit = plan.limit(resource.key) or Limit(resource.default_limit)
    value = limit.value
    fits = value is None or amount <= value * HEADROOM
    shown = "unlimited" if value is None else format_amount(value, resource.display)
    message = f"{resource.key}: {verb}{used} of {shown}"
    return Reason(resource.key, amount, value, fits, message)
