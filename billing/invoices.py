"""Local invoices after they are issued: overdue once their due date has passed, settled when
marked paid; the dunning rules (`billing.dunning`) follow both.

An open invoice whose due date has passed is `overdue` (stored by the overdue pass, and shown
so by `shown_status` even before it runs). The overdue pass makes the subscription
`past_due` from the first due date missed, which starts the grace period after which usage
is refused; marking the last overdue invoice paid restores access at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import dunning, repository
from billing.local.documents import INVOICE
from billing.models import Invoice, Subscription
from core.clock import Clock
from core.db import Database
from core.errors import Conflict, ErrorCode, NotFound
from core.orgs import Organization

OPEN = "open"
OVERDUE = "overdue"
PAID = "paid"
SETTLED = ("paid", "void")


def overdue_from(invoice: Invoice) -> datetime | None:
    """When an invoice becomes overdue: the start of the day after its due date (UTC)."""
    if invoice.due_on is None:
        return None
    return datetime.combine(invoice.due_on + timedelta(days=1), time(), tzinfo=UTC)


def shown_status(invoice: Invoice, today: date) -> str:
    """The status the page and the API show: an open invoice past its due date is overdue."""
    if (
        invoice.status == OPEN
        and invoice.kind == INVOICE
        and invoice.due_on is not None
        and invoice.due_on < today
        and invoice.total_minor > 0
    ):
        return OVERDUE
    return invoice.status


@dataclass(frozen=True)
class OverdueInvoices:
    """An organization's invoices found overdue by a pass, and when its usage stops."""

    organization_id: str
    invoices: list[Invoice]
    usage_stops_at: datetime | None


async def flag_overdue(
    session: AsyncSession,
    organization: Organization,
    subscription: Subscription,
    today: date,
    grace: timedelta,
) -> list[Invoice]:
    """Mark the organization's unpaid invoices due before `today` overdue and apply the
    dunning rules from the first due date missed; the caller holds the organization's and
    the subscription's locks. Idempotent: the grace counts from the first failure."""
    unpaid = list(await repository.unpaid_local_invoices(session, today, organization.id))
    for invoice in unpaid:
        invoice.status = OVERDUE
    if unpaid:
        first = overdue_from(unpaid[0])
        assert first is not None
        dunning.payment_failed(organization, subscription, at=first, grace=grace)
        await repository.add(session, organization, subscription, *unpaid)
    return unpaid


async def settle(
    session: AsyncSession,
    organization: Organization,
    subscription: Subscription,
    invoice: Invoice,
    at: datetime,
) -> Invoice:
    """Mark `invoice` paid at `at` (a paid or void one is answered as it is); when nothing
    is overdue any more, access is restored at once. The caller holds the locks."""
    if invoice.kind != INVOICE:
        raise Conflict(
            ErrorCode.INVOICE_NOT_PAYABLE,
            f"{invoice.number} is a credit note: there is nothing to pay",
            field="invoice_id",
        )
    if invoice.provider != "local":
        raise Conflict(
            ErrorCode.INVOICE_NOT_PAYABLE,
            f"{invoice.number} is paid through {invoice.provider}, not marked paid in Tally",
            field="invoice_id",
        )
    if invoice.status in SETTLED:
        return invoice
    invoice.status = PAID
    invoice.paid_at = at
    await repository.add(session, invoice)
    overdue = await repository.unpaid_local_invoices(session, at.date(), organization.id)
    if not overdue and subscription.past_due_since is not None:
        dunning.payment_settled(organization, subscription, at)
        await repository.add(session, organization, subscription)
    return invoice


class InvoiceService:
    """Marking local invoices paid, and the overdue pass; each in its own transactions."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def mark_paid(self, organization_id: str, invoice_id: str) -> Invoice:
        """Settle one of the organization's invoices (paid by transfer, say)."""
        async with self.db.write() as session:
            organization, subscription = await _locked(session, organization_id)
            invoice = await repository.lock_invoice(session, organization_id, invoice_id)
            if invoice is None:
                raise NotFound.of("invoice")
            return await settle(session, organization, subscription, invoice, self.clock.now())

    async def mark_paid_by_number(self, number: str) -> Invoice:
        """Settle the local invoice numbered `number` (unique for the seller)."""
        async with self.db.read() as session:
            found = await repository.find_local_invoice_by_number(session, number.strip())
        if found is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no local invoice numbered {number!r}")
        return await self.mark_paid(found.organization_id, found.id)

    async def flag_overdue(self, grace: timedelta) -> list[OverdueInvoices]:
        """The overdue pass over every organization (one transaction each, locking as plan
        changes do: organization, then subscription); run by `tally close-periods`."""
        today = self.clock.now().date()
        async with self.db.read() as session:
            candidates = await repository.unpaid_local_invoices(session, today)
        flagged = []
        for organization_id in dict.fromkeys(invoice.organization_id for invoice in candidates):
            async with self.db.write() as session:
                organization, subscription = await _locked(session, organization_id)
                invoices = await flag_overdue(session, organization, subscription, today, grace)
                if invoices:
                    flagged.append(
                        OverdueInvoices(
                            organization_id, invoices, organization.usage_suspended_from
                        )
                    )
        return flagged


async def _locked(session: AsyncSession, organization_id: str) -> tuple[Organization, Subscription]:
    organization = await repository.lock_organization(session, organization_id)
    subscription = await repository.lock_subscription(session, organization_id)
    if organization is None or subscription is None:
        raise NotFound.of("organization")
    return organization, subscription
