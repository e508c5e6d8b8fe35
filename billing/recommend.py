"""Plan recommendations: the plans that fit the organization's usage, cheapest first."""

from __future__ import annotations

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
    """How one resource fares on a plan: its projection against the plan's limit."""

    resource: str
    projected: int
    limit: int | None
    fits: bool
    message: str


@dataclass(frozen=True)
class Recommendation:
    """A plan, whether it fits, whether it is the current one, and why."""

    plan: Plan
    current: bool
    fits: bool
    recommended: bool
    reasons: tuple[Reason, ...]


def projected(meter: ResourceUsage, usage: UsageSnapshot, now: datetime) -> int:
    """Metered usage projected to the period's end from its burn rate; gauges as they are."""
    if not meter.resource.resets:
        return meter.used
    period = usage.period
    elapsed = max(min(now, period.end) - period.start, MIN_ELAPSED)
    length = period.end - period.start
    return int(Fraction(meter.used * (length // _MICROSECOND), elapsed // _MICROSECOND))


def recommend(
    catalog: Catalog, current_plan_id: str, usage: UsageSnapshot, now: datetime
) -> list[Recommendation]:
    """The plans that fit with headroom, cheapest first, and the current plan (marked) even
    when it does not fit; the cheapest fitting plan is `recommended`."""
    projections = {meter.resource.key: projected(meter, usage, now) for meter in usage.resources}
    candidates = []
    for plan in catalog:
        reasons = tuple(
            _reason(plan, meter, projections[meter.resource.key]) for meter in usage.resources
        )
        fits = all(reason.fits for reason in reasons)
        current = plan.id == current_plan_id
        if fits or current:
            candidates.append((plan, current, fits, reasons))
    cheapest = next((plan.id for plan, _, fits, _ in candidates if fits), None)
    return [
        Recommendation(plan, current, fits, plan.id == cheapest, reasons)
        for plan, current, fits, reasons in candidates
    ]


def _reason(plan: Plan, meter: ResourceUsage, amount: int) -> Reason:
    resource = meter.resource
    limit = plan.limit(resource.key) or Limit(resource.default_limit)
    value = limit.value
    fits = value is None or amount <= value * HEADROOM
    shown = "unlimited" if value is None else format_amount(value, resource.display)
    verb = "projected " if resource.resets else ""
    message = f"{resource.key}: {verb}{format_amount(amount, resource.display)} of {shown}"
    return Reason(resource.key, amount, value, fits, message)
