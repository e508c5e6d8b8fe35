"""A period's overage: what `overage`-policy resources used past the plan's limit, priced by
the plan in force during the period. One computation for both providers, so a Stripe
invoice carries the same overage line the local invoice would."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing.catalog import Plan
from billing.money import Money, minor_digits
from limits import Limit, Policy, UsageSnapshot
from limits.display import format_amount


@dataclass(frozen=True)
class OverageLine:
    """One resource's use past its limit: `quantity` units at `unit_price` (major units)."""

    resource: str
    quantity: int
    unit_price: Decimal
    amount: Money
    description: str


def overage_lines(plan: Plan, usage: UsageSnapshot, currency: str) -> list[OverageLine]:
    """The overage of every resetting `overage`-policy resource of `usage` (a period's
    snapshot) past `plan`'s limit and what top-ups covered (`meter.drawn`), priced by `plan`
    (the plan in force at the period's end) in `currency` (the organization's), rounded half
    up to the minor unit."""
    lines = []
    for meter in usage.resources:
        key = meter.resource.key
        limit = plan.limit(key) or Limit(meter.resource.default_limit)
        price = plan.overage_price(key, currency)
        if (
            not meter.resource.resets
            or limit.policy is not Policy.OVERAGE
            or limit.value is None
            or price is None
            or meter.used - meter.drawn <= limit.value
        ):
            continue
        excess = meter.used - meter.drawn - limit.value
        amount = (excess * price).scaleb(minor_digits(currency))
        minor = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        description = (
            f"{meter.resource.label} over the plan's {format_amount(limit.value)}: "
            f"{excess:,} {meter.resource.unit} at {price:f} {currency}"
        )
        lines.append(OverageLine(key, excess, price, Money(minor, currency), description))
    return lines
