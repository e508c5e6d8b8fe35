"""Closing billing periods: start the next period on the plan due, then bill each ended
period once, only after its grace window (late usage still counts in it until then)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import dunning, ledger_repository, plan_history, repository
from billing.catalog import Catalog, CatalogError, Plan
from billing.models import Invoice, Subscription
from billing.provider import BillingProvider, PeriodClose
from core import audit
from core.db import Database
from core.errors import DomainError
from core.orgs import Organization
from limits import LimitEngine, Period

_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class ClosedPeriod:
    """A period closed: its invoice (if the provider issued one), the plan in force after it,
    and whether that plan replaced the period's at its end (a scheduled change)."""

    organization_id: str
    period: Period
    invoice: Invoice | None
    plan_id: str
    switched_plan: bool


@dataclass(frozen=True)
class WaitingPeriod:
    """A period that ended but still takes late usage: it is billed from `closes_at`."""

    organization_id: str
    period: Period
    closes_at: datetime


@dataclass(frozen=True)
class FailedClose:
    """An organization whose periods could not be closed this time (nothing of it changed);
    the others were closed all the same."""

    organization_id: str
    reason: str


@dataclass(frozen=True)
class ClosingRun:
    """What one pass over every organization closed, what it left open for now, and what
    failed."""

    closed: list[ClosedPeriod]
    waiting: list[WaitingPeriod]
    failed: list[FailedClose]


async def close_due_periods(
    session: AsyncSession,
    engine: LimitEngine,
    catalog: Catalog,
    provider: BillingProvider,
    organization: Organization,
    subscription: Subscription,
    now: datetime,
) -> list[ClosedPeriod]:
    """Close every period of the organization whose grace window has passed by `now`,
    oldest first; a period that ended more recently only starts the next one (a scheduled
    change or a cancellation takes effect at its end) and waits to be billed.

    Each period is closed once (`billed_through` moves past it), and invoices are issued
    idempotently, so running this again changes nothing.
    """
    closed: list[ClosedPeriod] = []
    grace = engine.preparer.grace
    while True:
        period = _next_to_bill(engine, organization, subscription)
        if period.end > now or _after_cancellation(subscription, period):
            break
        await _start_next_period(session, organization, subscription, period)
        if period.end + grace > now:
            break
        started = await _plan_at(session, catalog, organization, subscription, period.start)
        ended = await _plan_at(session, catalog, organization, subscription, period.end - _INSTANT)
        _end_trial(subscription, period.end)
        invoice = await provider.close_period(
            session, PeriodClose(organization, subscription, period, started, ended)
        )
        subscription.billed_through = period.end
        await repository.add(session, organization, subscription)
        after = await _plan_at(session, catalog, organization, subscription, period.end)
        closed.append(
            ClosedPeriod(organization.id, period, invoice, after.id, after.id != ended.id)
        )
    return closed


def waiting_period(
    engine: LimitEngine, organization: Organization, subscription: Subscription, now: datetime
) -> WaitingPeriod | None:
    """The ended period still inside its grace window, if any (after closing what was due)."""
    period = _next_to_bill(engine, organization, subscription)
    if _after_cancellation(subscription, period):
        return None
    closes_at = period.end + engine.preparer.grace
    if period.end <= now < closes_at:
        return WaitingPeriod(organization.id, period, closes_at)
    return None


def _next_to_bill(
    engine: LimitEngine, organization: Organization, subscription: Subscription
) -> Period:
    return engine.period(organization, subscription.billed_through or subscription.started_at)


def _after_cancellation(subscription: Subscription, period: Period) -> bool:
    return subscription.canceled_at is not None and period.start >= subscription.canceled_at


async def _start_next_period(
    session: AsyncSession, organization: Organization, subscription: Subscription, ended: Period
) -> None:
    """What takes effect when `ended` ends: the scheduled plan, a cancellation. Idempotent."""
    scheduled = await ledger_repository.scheduled_change(session, organization.id)
    before = organization.plan_id
    if scheduled is not None and scheduled.effective_at <= ended.end:
        organization.plan_id = scheduled.to_plan_id
        scheduled.status = "applied"
        await plan_history.record(
            session, organization.id, scheduled.to_plan_id, scheduled.effective_at, scheduled.id
        )
        subscription.pending_plan_id = None
        await repository.add(session, scheduled)
    elif subscription.pending_plan_id is not None:
        organization.plan_id = subscription.pending_plan_id
        await plan_history.record(session, organization.id, organization.plan_id, ended.end)
        subscription.pending_plan_id = None
    if organization.plan_id != before:
        await audit.record(
            session,
            organization.id,
            "plan.changed",
            at=ended.end,
            subject=scheduled.id if scheduled is not None else None,
            before={"plan_id": before},
            after={"plan_id": organization.plan_id, "effective_at": ended.end},
        )
    if subscription.cancel_at_period_end and subscription.status != "canceled":
        prior = subscription.status
        dunning.set_status(organization, subscription, "canceled", ended.end, timedelta(0))
        await audit.record(
            session,
            organization.id,
            "subscription.canceled",
            at=ended.end,
            before={"status": prior},
            after={"status": "canceled", "canceled_at": ended.end},
        )
    await repository.add(session, organization, subscription)


async def _plan_at(
    session: AsyncSession,
    catalog: Catalog,
    organization: Organization,
    subscription: Subscription,
    at: datetime,
) -> Plan:
    """The plan in force at `at` (from the plan history; the first one when `at` comes
    before the subscription started)."""
    plan_id = await plan_history.plan_at(session, organization.id, max(at, subscription.started_at))
    return catalog.get(plan_id or organization.plan_id)


def _end_trial(subscription: Subscription, at: datetime) -> None:
    trial_ends_at = subscription.trial_ends_at
    if subscription.status == "trialing" and trial_ends_at is not None and trial_ends_at <= at:
        subscription.status = "active"


async def close_all_periods(
    db: Database,
    engine: LimitEngine,
    catalog: Catalog,
    provider: BillingProvider,
    now: datetime,
) -> ClosingRun:
    """Close the due periods of every organization, one transaction per organization;
    rows are locked in the order plan changes lock them (organization, then subscription)."""
    async with db.read() as session:
        ids = [
            organization.id for organization, _ in await repository.organizations_to_close(session)
        ]
    run = ClosingRun([], [], [])
    for organization_id in ids:
        try:
            await _close_one(db, engine, catalog, provider, organization_id, now, run)
        except (CatalogError, DomainError) as error:
            reason = error.message if isinstance(error, DomainError) else str(error)
            run.failed.append(FailedClose(organization_id, reason))
    return run


async def _close_one(
    db: Database,
    engine: LimitEngine,
    catalog: Catalog,
    provider: BillingProvider,
    organization_id: str,
    now: datetime,
    run: ClosingRun,
) -> None:
    async with db.write() as session:
        organization = await repository.lock_organization(session, organization_id)
        subscription = await repository.lock_subscription(session, organization_id)
        if subscription is None or organization is None:
            return
        closed = await close_due_periods(
            session, engine, catalog, provider, organization, subscription, now
        )
        waiting = waiting_period(engine, organization, subscription, now)
    run.closed.extend(closed)
    if waiting is not None:
        run.waiting.append(waiting)
    if closed:
        await provider.send_pending(db, organization_id)
