"""An organization's subscription as the page shows it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.catalog import Catalog, Plan
from billing.dunning import DunningState, SubscriptionStatus, dunning_state, status_of
from core.orgs import Organization
from limits import LimitEngine


@dataclass(frozen=True)
class SubscriptionView:
    """The plan in force, its state and the current billing period; `payment_issue` while a
    payment is late (what to pay by when), `usage_suspended` once metered usage is refused."""

    plan: Plan
    status: SubscriptionStatus
    current_period_start: datetime
    current_period_end: datetime
    resets_on: date
    pending_plan: Plan | None
    cancel_at_period_end: bool
    trial_ends_at: datetime | None = None
    payment_issue: DunningState | None = None
    payment_message: str | None = None
    usage_suspended: bool = False


async def subscription_of(
    session: AsyncSession, engine: LimitEngine, catalog: Catalog, organization: Organization
) -> SubscriptionView:
    subscription = await repository.get_subscription(session, organization.id)
    now = engine.clock.now()
    period = engine.period(organization, now)
    suspended_from = organization.usage_suspended_from
    view = SubscriptionView(
        plan=catalog.get(organization.plan_id),
        status=SubscriptionStatus.ACTIVE,
        current_period_start=period.start,
        current_period_end=period.end,
        resets_on=period.resets_on,
        pending_plan=None,
        cancel_at_period_end=False,
        usage_suspended=suspended_from is not None and suspended_from <= now,
    )
    if subscription is None:
        return view
    pending = subscription.pending_plan_id
    issue = dunning_state(subscription, organization)
    return replace(
        view,
        status=status_of(subscription, now),
        pending_plan=catalog.get(pending) if pending else None,
        cancel_at_period_end=subscription.cancel_at_period_end,
        trial_ends_at=subscription.trial_ends_at,
        payment_issue=issue,
        payment_message=issue.message(now) if issue else None,
    )
