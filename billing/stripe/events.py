"""Handlers of Stripe's events, one per type: mirror Stripe's latest state locally.

An event older than the state already applied (`synced_at`) is skipped, so deliveries out of
order settle on Stripe's latest state; one of the same second is re-read from Stripe first
(`same_second`, billing/webhooks.py). Handlers lock the organization and the subscription
they change. Statuses go through billing/dunning.py. Payloads are plain dicts; no `stripe`
import needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import dunning, repository
from billing.models import Invoice, Subscription
from billing.webhooks import EventContext, Handled, Handler
from core.clock import Clock
from core.orgs import Organization

PLAN_KEY = "tally_plan"
PENDING_PLAN_KEY = "tally_pending_plan"
PENDING_FROM_KEY = "tally_pending_from"
ORGANIZATION_KEY = "tally_organization"
_INVOICE_RANK = {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 3}
_STATUSES = {"incomplete": "past_due", "incomplete_expired": "canceled", "paused": "unpaid"}
"""Stripe's statuses Tally has no name for, as the dunning rules treat them."""


async def _subscription_for(session: AsyncSession, obj: Mapping[str, Any]) -> Subscription | None:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if isinstance(customer, str):
        found = await repository.find_subscription_by_customer(session, customer)
        if found is not None:
            return found
    organization_id = (obj.get("metadata") or {}).get(ORGANIZATION_KEY)
    if isinstance(organization_id, str):
        return await repository.get_subscription(session, organization_id)
    return None


async def _locked(
    session: AsyncSession, obj: Mapping[str, Any]
) -> tuple[Organization, Subscription] | None:
    """The organization and subscription an object is about, locked (organization first,
    the order every writer takes)."""
    found = await _subscription_for(session, obj)
    if found is None:
        return None
    organization = await repository.lock_organization(session, found.organization_id)
    subscription = await repository.lock_subscription(session, found.organization_id)
    if organization is None or subscription is None:
        return None
    return organization, subscription


async def same_second(session: AsyncSession, obj: Mapping[str, Any], created: datetime) -> bool:
    """Whether the state applied for `obj` (a subscription or an invoice) is of the second
    `created`: the event cannot be ordered against it without re-reading the object."""
    subscription = await _subscription_for(session, obj)
    if subscription is None:
        return False
    if obj.get("object") == "subscription":
        return subscription.synced_at == created
    if obj.get("object") == "invoice" and isinstance(obj.get("id"), str):
        row = await repository.find_invoice_by_ref(
            session, subscription.organization_id, str(obj["id"])
        )
        return row is not None and row.synced_at == created
    return False


async def on_subscription(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    found = await _locked(session, obj)
    if found is None:
        return Handled("unknown_customer")
    organization, subscription = found
    organization_id = subscription.organization_id
    if subscription.synced_at is not None and created < subscription.synced_at:
        return Handled("stale", organization_id)
    subscription.subscription_ref = obj.get("id")
    status = str(obj.get("status") or subscription.status)
    trial_end = obj.get("trial_end")
    if isinstance(trial_end, int):
        subscription.trial_ends_at = datetime.fromtimestamp(trial_end, UTC)
    dunning.set_status(
        organization, subscription, _STATUSES.get(status, status), created, context.grace
    )
    subscription.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    subscription.synced_at = created
    metadata = obj.get("metadata") or {}
    plan_id = metadata.get(PLAN_KEY) or _plan_of_items(obj, context)
    pending = metadata.get(PENDING_PLAN_KEY)
    pending = pending if pending and context.catalog.find(pending) else None
    since = str(metadata.get(PENDING_FROM_KEY) or "")
    if pending and since.isdigit() and created >= datetime.fromtimestamp(int(since), UTC):
        plan_id, pending = pending, None
    if plan_id and context.catalog.find(plan_id):
        organization.plan_id = plan_id
    subscription.pending_plan_id = pending
    await repository.add(session, organization, subscription)
    return Handled("applied", organization_id)


async def on_subscription_deleted(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    return await on_subscription(session, {**obj, "status": "canceled"}, created, context)


def _plan_of_items(obj: Mapping[str, Any], context: EventContext) -> str | None:
    items = (obj.get("items") or {}).get("data") or []
    for item in items:
        price = (item.get("price") or item.get("plan") or {}).get("id")
        for plan in context.catalog:
            if price and plan.stripe_price == price:
                return plan.id
    return None


def _day(timestamp: Any) -> date | None:
    return datetime.fromtimestamp(timestamp, UTC).date() if isinstance(timestamp, int) else None


async def on_invoice(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    found = await _locked(session, obj)
    if found is None:
        return Handled("unknown_customer")
    organization_id = found[1].organization_id
    _, applied = await mirror_invoice(session, organization_id, obj, created, context.clock)
    return Handled("applied" if applied else "stale", organization_id)


async def on_invoice_paid(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    """The invoice mirrored; everything restored at once (billing/dunning.py)."""
    handled = await on_invoice(session, obj, created, context)
    if handled.outcome == "applied":
        await _dunning(session, obj, lambda o, s: dunning.payment_settled(o, s, created))
    return handled


async def on_invoice_payment_failed(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    """The invoice mirrored; the subscription past_due, its grace started."""
    handled = await on_invoice(session, obj, created, context)
    if handled.outcome == "applied":
        await _dunning(
            session, obj, lambda o, s: dunning.payment_failed(o, s, created, context.grace)
        )
    return handled


async def _dunning(
    session: AsyncSession,
    obj: Mapping[str, Any],
    apply: Callable[[Organization, Subscription], None],
) -> None:
    found = await _locked(session, obj)
    if found is not None:
        apply(*found)
        await repository.add(session, *found)


async def mirror_invoice(
    session: AsyncSession,
    organization_id: str,
    obj: Mapping[str, Any],
    seen_at: datetime,
    clock: Clock,
) -> tuple[Invoice, bool]:
    """The local mirror of a Stripe invoice, updated unless it holds a newer state already
    (True when updated)."""
    invoice_ref = str(obj["id"])
    status = str(obj.get("status") or "draft")
    row = await repository.find_invoice_by_ref(session, organization_id, invoice_ref)
    if row is not None and row.synced_at is not None:
        newer = (row.synced_at, _INVOICE_RANK.get(row.status, 0))
        if (seen_at, _INVOICE_RANK.get(status, 0)) < newer:
            return row, False
    if row is None:
        row = Invoice(
            organization_id=organization_id,
            number=invoice_ref,
            issued_on=_day(obj.get("created")) or seen_at.date(),
            total_minor=0,
            currency="EUR",
            status=status,
            created_at=clock.now(),
            provider="stripe",
            provider_ref=invoice_ref,
        )
    row.number = str(obj.get("number") or invoice_ref)
    row.total_minor = int(obj.get("total") or 0)
    row.currency = str(obj.get("currency") or "eur").upper()
    row.status = status
    row.pdf_url = obj.get("invoice_pdf")
    row.hosted_url = obj.get("hosted_invoice_url")
    row.period_start = _day(obj.get("period_start"))
    row.period_end = _day(obj.get("period_end"))
    row.synced_at = seen_at
    await repository.add(session, row)
    return row, True


HANDLERS: Mapping[str, Handler] = {
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription_deleted,
    "invoice.created": on_invoice,
    "invoice.finalized": on_invoice,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_invoice_payment_failed,
}
"""The events Tally handles; any other type is acknowledged and ignored."""
