"""Billing as a plugin of the limit engine: limits come from the organization's plan, and an
overage limit is capped by the organization's spend cap."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from billing.catalog import Catalog
from billing.money import minor_digits
from core.orgs import Organization
from limits import Limit, Policy, Resource, hookimpl


def units_paid_by(cap_minor: int, currency: str, unit_price: Decimal) -> int | None:
    """The most whole units at `unit_price` (major units of `currency`) that `cap_minor`
    (minor units) pays for, exactly: floor(cap / price), in integers. None when units are free
    (the cap never binds)."""
    if unit_price <= 0:
        return None
    numerator, denominator = unit_price.as_integer_ratio()
    scale: int = 10 ** minor_digits(currency)
    return (max(cap_minor, 0) * denominator) // (numerator * scale)


def spend_cap_limit(organization: Organization, catalog: Catalog, limit: Limit, key: str) -> Limit:
    """`limit` with the overage the organization's spend cap pays for (`overage_cap`), when the
    limit bills overage and the organization has a cap."""
    cap = organization.spend_cap_minor
    if cap is None or limit.policy is not Policy.OVERAGE or limit.value is None:
        return limit
    price = catalog.get(organization.plan_id).overage_price(key, organization.currency)
    if price is None:
        return limit
    return replace(limit, overage_cap=units_paid_by(cap, organization.currency, price))


class PlanLimits:
    """Answers `tally_resolve_limit` from the plan catalog (trylast: a partner may override),
    an overage limit capped by the organization's spend cap."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @hookimpl(trylast=True)
    def tally_resolve_limit(self, organization: Organization, resource: Resource) -> Limit | None:
        limit = self.catalog.get(organization.plan_id).limit(resource.key)
        if limit is None:
            return None
        return spend_cap_limit(organization, self.catalog, limit, resource.key)
