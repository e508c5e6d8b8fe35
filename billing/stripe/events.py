"""Handlers of Stripe's events, one per type: mirror Stripe's latest state locally.

An event older than the state already applied (`synced_at`) is skipped, so deliveries out of
order settle on Stripe's latest state. Payloads are plain dicts; no `stripe` import needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.models import Invoice, Subscription
from billing.webhooks import EventContext, Handled, Handler
from core.clock import Clock
from core.orgs import Organization

PLAN_KEY = "tally_plan"
PENDING_PLAN_KEY = "tally_pending_plan"
ORGANIZATION_KEY = "tally_organization"
_INVOICE_RANK = {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 3}


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


async def on_subscription(
    session: AsyncSession, obj: Mapping[str, Any], created: datetime, context: EventContext
) -> Handled:
    subscription = await _subscription_for(session, obj)
    if subscription is None:
        return Handled("unknown_customer")
    organization_id = subscription.organization_id
    if subscription.synced_at is not None and created < subscription.synced_at:
        return Handled("stale", organization_id)
    subscription.subscription_ref = obj.get("id")
    subscription.status = str(obj.get("status") or subscription.status)
    subscription.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    subscription.synced_at = created
    metadata = obj.get("metadata") or {}
    organization = await session.get(Organization, organization_id)
    plan_id = metadata.get(PLAN_KEY) or _plan_of_items(obj, context)
    if organization is not None and plan_id and context.catalog.find(plan_id):
        organization.plan_id = plan_id
        await repository.add(session, organization)
    pending = metadata.get(PENDING_PLAN_KEY)
    subscription.pending_plan_id = pending if pending and context.catalog.find(pending) else None
    await repository.add(session, subscription)
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
    subscription = await _subscription_for(session, obj)
    if subscription is None:
        return Handled("unknown_customer")
    organization_id = subscription.organization_id
    _, applied = await mirror_invoice(session, organization_id, obj, created, context.clock)
    return Handled("applied" if applied else "stale", organization_id)


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
    "invoice.paid": on_invoice,
    "invoice.payment_failed": on_invoice,
}
"""The events Tally handles; any other type is acknowledged and ignored."""
