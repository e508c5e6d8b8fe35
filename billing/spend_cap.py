"""The spend cap: the most an organization lets overage cost per period, in its currency.

The cap is kept on the organization (`spend_cap_minor`); billing's limit plugin turns it into
the units past the limit that it pays for, so the limit engine refuses what would pass it
(SPEND_CAP_REACHED) under the same counter locks as a hard limit, and alerts at 80 and 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing import repository
from billing.catalog import Catalog, Plan
from billing.money import Money, minor_digits
from core import audit
from core.db import Database
from core.errors import ErrorCode, InvalidInput, NotFound
from core.orgs import Organization
from limits import LimitEngine, Policy, UsageSnapshot


@dataclass(frozen=True)
class SpendCapStatus:
    """The organization's cap (None: none) and what overage cost so far this period."""

    cap: Money | None
    spent: Money


def bills_overage(plan: Plan) -> bool:
    """Whether the plan bills any resource's overage (a cap means something)."""
    return any(
        plan.policies.get(key) is Policy.OVERAGE and plan.overage.get(key) is not None
        for key in plan.limits
    )


def overage_cost(plan: Plan, usage: UsageSnapshot, currency: str) -> Money:
    """What the period's overage (past the limit and any top-up drawn) costs in `currency`, each
    resource rounded half up to the minor unit as its invoice line is."""
    total = 0
    for meter in usage.resources:
        limit = plan.limit(meter.resource.key)
        if limit is None or limit.policy is not Policy.OVERAGE or not meter.resource.resets:
            continue
        price = plan.overage_price(meter.resource.key, currency)
        if price is None or meter.overage == 0:
            continue
        amount = (meter.overage * price).scaleb(minor_digits(currency))
        total += int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return Money(total, currency)


class SpendCapService:
    """Sets, clears and reports the organization's spend cap."""

    def __init__(self, db: Database, catalog: Catalog, engine: LimitEngine) -> None:
        self.db = db
        self.catalog = catalog
        self.engine = engine

    async def set(self, organization: Organization, amount_minor: int | None) -> SpendCapStatus:
        """Cap overage at `amount_minor` (minor units of the organization's currency) per
        period, or clear the cap with None; only on a plan that bills overage."""
        plan = self.catalog.get(organization.plan_id)
        if amount_minor is not None:
            if not bills_overage(plan):
                raise InvalidInput(
                    ErrorCode.INVALID_INPUT,
                    f"plan {plan.id!r} bills no overage: there is nothing to cap",
                    field="amount",
                )
            if amount_minor < 0:
                raise InvalidInput(
                    ErrorCode.INVALID_AMOUNT, "a spend cap cannot be negative", field="amount"
                )
        async with self.db.write() as session:
            row = await repository.lock_organization(session, organization.id)
            if row is None:
                raise NotFound.of("organization")
            before = {"spend_cap_minor": row.spend_cap_minor, "currency": row.currency}
            row.spend_cap_minor = amount_minor
            await repository.add(session, row)
            await audit.record(
                session,
                organization.id,
                "spend_cap.set",
                at=self.engine.clock.now(),
                before=before,
                after={"spend_cap_minor": amount_minor, "currency": row.currency},
            )
        organization.spend_cap_minor = amount_minor
        return await self.status(organization)

    async def status(self, organization: Organization) -> SpendCapStatus:
        """The cap and what this period's overage cost so far."""
        currency = organization.currency
        async with self.db.read() as session:
            usage = await self.engine.usage(session, organization)
        spent = overage_cost(self.catalog.get(organization.plan_id), usage, currency)
        cap = organization.spend_cap_minor
        return SpendCapStatus(None if cap is None else Money(cap, currency), spent)
