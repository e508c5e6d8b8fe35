"""The embedded provider: Tally keeps its own ledger and issues its own invoices."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.catalog import Catalog, Plan
from billing.invoicing import Invoicer, stored_document
from billing.local.documents import InvoiceLine, format_date, format_period
from billing.models import Invoice, Subscription
from billing.overage import overage_lines
from billing.proration import Proration, portion, remaining_fraction
from billing.provider import (
    ChangeRequest,
    Charge,
    Charged,
    Opening,
    PeriodClose,
    PortalUnavailable,
    ProviderRefs,
    PushedChange,
)
from core.db import Database
from core.orgs import Organization
from limits import LimitEngine, Period


class LocalProvider:
    """Bills from Tally's own ledger: invoices at period close and for prorated changes,
    credit carried on the subscription; there is no payment collection and no portal."""

    name = "local"

    def __init__(self, invoicer: Invoicer, catalog: Catalog, engine: LimitEngine) -> None:
        self.invoicer = invoicer
        self.catalog = catalog
        self.engine = engine

    async def preview_change(
        self, session: AsyncSession, request: ChangeRequest
    ) -> Proration | None:
        return None

    async def push_change(self, request: ChangeRequest) -> PushedChange:
        return PushedChange()

    async def cancel_scheduled(self, subscription: Subscription, current: Plan, key: str) -> None:
        return None

    async def set_cancel_at_period_end(
        self, subscription: Subscription, cancel: bool, key: str
    ) -> None:
        return None

    async def open_subscription(self, opening: Opening) -> ProviderRefs | None:
        return None

    async def send_pending(self, db: Database, organization_id: str) -> None:
        return None

    async def checkout_url(self, subscription: Subscription, currency: str, return_url: str) -> str:
        raise PortalUnavailable(
            "collecting a payment method needs the Stripe provider (TALLY_BILLING=stripe); with "
            "local billing, invoices are paid by transfer and marked paid"
        )

    async def apply_change(
        self, session: AsyncSession, request: ChangeRequest, pushed: PushedChange
    ) -> Invoice | None:
        proration = request.proration
        since = format_period(proration.at.date(), last_day(request.period))
        if proration.carried_credit.amount_minor:
            credited = await self._credit_note(session, request, since)
            request.subscription.credit_minor += proration.carried_credit.amount_minor - credited
        if proration.amount_due.amount_minor == 0:
            return None
        lines = [
            InvoiceLine.of(
                f"{request.new.name} plan, {since} (prorated)", 1, proration.charge.amount_minor
            ),
            InvoiceLine.of(
                f"Unused time on {request.current.name} plan, {since}",
                1,
                -proration.credit.amount_minor,
            ),
        ]
        issued = await self.invoicer.issue(
            session,
            request.organization,
            source=f"change:{request.change_id}",
            issued_on=proration.at.date(),
            lines=lines,
            currency=proration.currency,
            period_start=proration.at.date(),
            period_end=last_day(request.period),
        )
        return issued.invoice

    async def _credit_note(self, session: AsyncSession, request: ChangeRequest, since: str) -> int:
        """A change giving back more than it charges: a credit note for the net credit against
        the last period invoice (VAT reversed at its rate), at most what is left of that
        invoice to credit; returns the net amount credited (the rest is carried as a credit
        balance, so nothing is credited twice). Nothing before the first period invoice."""
        proration = request.proration
        credited = await repository.last_period_invoice(session, request.organization.id)
        if credited is None or credited.currency != proration.currency:
            return 0
        notes = await repository.credit_notes_of(session, credited.id)
        left = stored_document(credited).subtotal_minor + sum(
            stored_document(note).subtotal_minor for note in notes
        )
        amount = min(proration.carried_credit.amount_minor, max(left, 0))
        if amount == 0:
            return 0
        lines = [
            InvoiceLine.of(
                f"Unused time on {request.current.name} plan, {since}",
                1,
                -proration.credit.amount_minor,
            ),
            InvoiceLine.of(
                f"{request.new.name} plan, {since} (prorated)", 1, proration.charge.amount_minor
            ),
        ]
        if amount < proration.carried_credit.amount_minor:
            carried = proration.carried_credit.amount_minor - amount
            lines.append(InvoiceLine.of("Kept as credit balance for the next invoices", 1, carried))
        await self.invoicer.credit(
            session,
            request.organization,
            credited,
            source=f"credit:{request.change_id}",
            issued_on=proration.at.date(),
            lines=lines,
            period_start=proration.at.date(),
            period_end=last_day(request.period),
        )
        return amount

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        """The period's invoice: its price on the plan in force at its start, for the part of
        it after the subscription started and after any trial, then the overage priced by the
        plan in force at its end; none when nothing is owed (a period wholly in a trial)."""
        period, plan, subscription = close.period, close.plan, close.subscription
        start = max(period.start, subscription.started_at)
        if subscription.trial_ends_at is not None:
            start = max(start, min(subscription.trial_ends_at, period.end))
        lines = []
        if start < period.end:
            price = plan.price(close.organization.currency)
            charge = portion(price, remaining_fraction(period, start))
            label = (
                f"{plan.name} plan, {format_date(period.start.date())} "
                f"to {format_date(last_day(period))}"
            )
            if start > period.start:
                label += f" (from {format_date(start.date())})"
            lines.append(InvoiceLine.of(label, 1, charge.amount_minor))
        lines += await self._overage_lines(session, close.organization, period, close.final_plan)
        if not lines:
            return None
        subtotal = sum(line.amount_minor for line in lines)
        applied = min(subscription.credit_minor, max(subtotal, 0))
        if applied:
            lines.append(InvoiceLine.of("Credit balance applied", 1, -applied))
            subscription.credit_minor -= applied
        issued = await self.invoicer.issue(
            session,
            close.organization,
            source=f"period:{period.start.date().isoformat()}",
            issued_on=period.end.date(),
            lines=lines,
            currency=close.organization.currency,
            period_start=period.start.date(),
            period_end=last_day(period),
        )
        return issued.invoice

    async def _overage_lines(
        self, session: AsyncSession, organization: Organization, period: Period, plan: Plan
    ) -> list[InvoiceLine]:
        """Overage of the period's usage past the limits of `plan` (the plan in force at the
        period's end) and the top-ups, at `plan`'s prices in the organization's currency."""
        usage = await self.engine.usage(session, organization, at=period.start)
        lines = overage_lines(plan, usage, organization.currency)
        return [InvoiceLine.of(line.description, 1, line.amount.amount_minor) for line in lines]

    async def portal_url(self, subscription: Subscription, return_url: str) -> str:
        raise PortalUnavailable(
            "the billing portal needs the Stripe provider (TALLY_BILLING=stripe); with local "
            "billing, edit the organization settings and download invoices from this page"
        )

    async def charge(self, charge: Charge) -> Charged | None:
        """Nothing to do remotely: the local ledger bills in `record_charge`."""
        return None

    async def record_charge(
        self, session: AsyncSession, charge: Charge, charged: Charged | None
    ) -> Invoice | None:
        """The invoice of a one-off charge, issued today under `charge.source` (once)."""
        issued = await self.invoicer.issue(
            session,
            charge.organization,
            source=charge.source,
            issued_on=self.engine.clock.now().date(),
            lines=[InvoiceLine.of(charge.description, 1, charge.amount.amount_minor)],
            currency=charge.amount.currency,
        )
        return issued.invoice


def last_day(period: Period) -> date:
    """The period's last day (its end is excluded)."""
    return (period.end - timedelta(microseconds=1)).date()
