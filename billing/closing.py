"""Closing billing periods: bill each ended period once, then start the next on the plan due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.catalog import Catalog
from billing.models import Invoice, Subscription
from billing.provider import BillingProvider, PeriodClose
from core.db import Database
from core.orgs import Organization
from limits import LimitEngine, Period


@dataclass(frozen=True)
class ClosedPeriod:
    """A period closed: its invoice (if the provider issued one) and the plan now in force."""

    organization_id: str
    period: Period
    invoice: Invoice | None
    plan_id: str
    switched_plan: bool


async def close_due_periods(
    session: AsyncSession,
    engine: LimitEngine,
    catalog: Catalog,
    provider: BillingProvider,
    organization: Organization,
    subscription: Subscription,
    now: datetime,
) -> list[ClosedPeriod]:
    """Close every period of the organization that ended by `now`, oldest first.

    Each period is closed once (`billed_through` moves past it), and invoices are issued
    idempotently, so running this again changes nothing.
    """
    closed: list[ClosedPeriod] = []
    while True:
        since = subscription.billed_through or subscription.started_at
        period = engine.period(organization, since)
        if period.end > now:
            return closed
        plan = catalog.get(subscription.period_plan_id or organization.plan_id)
        invoice = await provider.close_period(
            session, PeriodClose(organization, subscription, period, plan)
        )
        switched = subscription.pending_plan_id is not None
        if subscription.pending_plan_id is not None:
            organization.plan_id = subscription.pending_plan_id
            subscription.pending_plan_id = None
        subscription.period_plan_id = None
        subscription.billed_through = period.end
        await repository.add(session, organization, subscription)
        closed.append(
            ClosedPeriod(organization.id, period, invoice, organization.plan_id, switched)
        )


async def close_all_periods(
    db: Database,
    engine: LimitEngine,
    catalog: Catalog,
    provider: BillingProvider,
    now: datetime,
) -> list[ClosedPeriod]:
    """Close the ended periods of every organization, one transaction per organization;
    rows are locked in the order plan changes lock them (organization, then subscription)."""
    async with db.read() as session:
        ids = [
            organization.id for organization, _ in await repository.organizations_to_close(session)
        ]
    closed: list[ClosedPeriod] = []
    for organization_id in ids:
        async with db.write() as session:
            organization = await repository.lock_organization(session, organization_id)
            subscription = await repository.lock_subscription(session, organization_id)
            if subscription is None or organization is None:
                continue
            closed += await close_due_periods(
                session, engine, catalog, provider, organization, subscription, now
            )
    return closed
