"""An organization's subscription as the page shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.catalog import Catalog, Plan
from core.orgs import Organization
from limits import LimitEngine


@dataclass(frozen=True)
class SubscriptionView:
    """The plan in force, its state and the current billing period."""

    plan: Plan
    status: str
    current_period_start: datetime
    current_period_end: datetime
    resets_on: date
    pending_plan: Plan | None
    cancel_at_period_end: bool


async def subscription_of(
    session: AsyncSession, engine: LimitEngine, catalog: Catalog, organization: Organization
) -> SubscriptionView:
    subscription = await repository.get_subscription(session, organization.id)
    period = engine.period(organization)
    pending = subscription.pending_plan_id if subscription else None
    return SubscriptionView(
        plan=catalog.get(organization.plan_id),
        status=subscription.status if subscription else "active",
        current_period_start=period.start,
        current_period_end=period.end,
        resets_on=period.resets_on,
        pending_plan=catalog.get(pending) if pending else None,
        cancel_at_period_end=subscription.cancel_at_period_end if subscription else False,
    )
