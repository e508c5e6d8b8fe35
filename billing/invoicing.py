"""Issuing local invoices and credit notes: gap-free numbers from the seller's one sequence,
the buyer's tax, a due date, a stored document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.local.documents import CREDIT_NOTE, INVOICE, InvoiceDocument, InvoiceLine, Party
from billing.models import Invoice
from billing.org_settings import settings_of
from billing.tax import TaxDecision, TaxTable
from core.clock import Clock
from core.orgs import Organization

DEFAULT_PAYMENT_TERMS = timedelta(days=30)
CREDIT_NOTE_STATUS = "issued"


def invoice_series(prefix: str, issued_on: date) -> str:
    """The seller's numbering series for a year: 'TAL-2026'."""
    return f"{prefix}-{issued_on.year}"


def invoice_number(series: str, sequence: int) -> str:
    """'TAL-2026-000123': the series and the number in it."""
    return f"{series}-{sequence:06d}"


@dataclass(frozen=True)
class Issued:
    """An invoice and whether this call created it (False: it existed already)."""

    invoice: Invoice
    created: bool


class Invoicer:
    """Issues an organization's local invoices and credit notes, each once per `source`,
    numbered in one sequence for the seller (every organization's documents share it)."""

    def __init__(
        self,
        taxes: TaxTable,
        seller: Party,
        clock: Clock,
        prefix: str = "TAL",
        payment_terms: timedelta = DEFAULT_PAYMENT_TERMS,
    ) -> None:
        if seller.country is None:
            raise ValueError("the seller needs a country to decide taxes")
        if payment_terms < timedelta(0):
            raise ValueError("payment terms cannot be negative")
        self.taxes = taxes
        self.seller = seller
        self.clock = clock
        self.prefix = prefix
        self.payment_terms = payment_terms

    async def issue(
        self,
        session: AsyncSession,
        organization: Organization,
        *,
        source: str,
        issued_on: date,
        lines: Sequence[InvoiceLine],
        currency: str,
        period_start: date | None = None,
        period_end: date | None = None,
    ) -> Issued:
        """The invoice for `source`, created with the next number unless it exists already;
        due `payment_terms` after `issued_on`."""

        async def tax() -> tuple[Party, TaxDecision]:
            settings = await settings_of(session, organization.id)
            assert self.seller.country is not None
            decision = self.taxes.decide(self.seller.country, settings.country, settings.vat_id)
            return Party.from_settings(settings, organization.name), decision

        return await self._issue(
            session,
            organization,
            source=source,
            issued_on=issued_on,
            lines=lines,
            currency=currency,
            parties=tax,
            period_start=period_start,
            period_end=period_end,
            kind=INVOICE,
            due_on=issued_on + self.payment_terms,
            credited=None,
        )

    async def credit(
        self,
        session: AsyncSession,
        organization: Organization,
        credited: Invoice,
        *,
        source: str,
        issued_on: date,
        lines: Sequence[InvoiceLine],
        period_start: date | None = None,
        period_end: date | None = None,
    ) -> Issued:
        """A credit note reversing (part of) `credited`, once per `source`: `lines` add up
        to a negative amount (a positive line labels what is deducted from the credit); the
        VAT is reversed at the credited invoice's rate, the buyer is the one it was issued to."""
        if credited.kind != INVOICE or credited.document is None:
            raise ValueError(f"{credited.number} is not a local invoice that can be credited")
        if sum(line.amount_minor for line in lines) >= 0:
            raise ValueError("a credit note's lines add up to a negative amount")
        original = stored_document(credited)

        async def tax() -> tuple[Party, TaxDecision]:
            return original.buyer, original.tax

        return await self._issue(
            session,
            organization,
            source=source,
            issued_on=issued_on,
            lines=lines,
            currency=credited.currency,
            parties=tax,
            period_start=period_start,
            period_end=period_end,
            kind=CREDIT_NOTE,
            due_on=None,
            credited=credited,
        )

    async def _issue(
        self,
        session: AsyncSession,
        organization: Organization,
        *,
        source: str,
        issued_on: date,
        lines: Sequence[InvoiceLine],
        currency: str,
        parties: Callable[[], Awaitable[tuple[Party, TaxDecision]]],
        period_start: date | None,
        period_end: date | None,
        kind: str,
        due_on: date | None,
        credited: Invoice | None,
    ) -> Issued:
        existing = await repository.find_invoice_by_source(session, organization.id, source)
        if existing is not None:
            return Issued(existing, False)
        savepoint = await session.begin_nested()
        series = invoice_series(self.prefix, issued_on)
        sequence = await repository.next_invoice_number(session, series)
        existing = await repository.find_invoice_by_source(session, organization.id, source)
        if existing is not None:
            await savepoint.rollback()
            return Issued(existing, False)
        buyer, tax = await parties()
        document = InvoiceDocument.build(
            number=invoice_number(series, sequence),
            issued_on=issued_on,
            seller=self.seller,
            buyer=buyer,
            lines=lines,
            currency=currency,
            tax=tax,
            status=CREDIT_NOTE_STATUS if kind == CREDIT_NOTE else "open",
            period_start=period_start,
            period_end=period_end,
            kind=kind,
            due_on=due_on,
            credited_number=credited.number if credited is not None else None,
        )
        invoice = Invoice(
            organization_id=organization.id,
            number=document.number,
            issued_on=issued_on,
            total_minor=document.total_minor,
            currency=currency,
            status=document.status,
            period_start=period_start,
            period_end=period_end,
            created_at=self.clock.now(),
            source=source,
            document=document_data(document),
            kind=kind,
            due_on=due_on,
            credited_invoice_id=credited.id if credited is not None else None,
        )
        await repository.add(session, invoice)
        await savepoint.commit()
        return Issued(invoice, True)


def document_data(document: InvoiceDocument) -> dict[str, Any]:
    """What a stored invoice keeps to render the same document again."""
    return {
        "seller": _party_data(document.seller),
        "buyer": _party_data(document.buyer),
        "lines": [
            [line.description, line.quantity, line.unit_amount_minor, line.amount_minor]
            for line in document.lines
        ],
        "tax": [document.tax.rate_basis_points, document.tax.reverse_charge, document.tax.label],
        "credited_number": document.credited_number,
    }


def stored_document(invoice: Invoice) -> InvoiceDocument:
    """The document of a local invoice as issued, with the invoice's current status; one
    issued before a field existed renders without it."""
    data = invoice.document
    if data is None:
        raise ValueError(f"invoice {invoice.number} has no stored document")
    rate, reverse_charge, label = data["tax"]
    return InvoiceDocument.build(
        number=invoice.number,
        issued_on=invoice.issued_on,
        seller=_party(data["seller"]),
        buyer=_party(data["buyer"]),
        lines=[InvoiceLine(*line) for line in data["lines"]],
        currency=invoice.currency,
        tax=TaxDecision(rate, reverse_charge, label),
        status=invoice.status,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        kind=invoice.kind,
        due_on=invoice.due_on,
        credited_number=data.get("credited_number"),
    )


def _party(data: dict[str, Any]) -> Party:
    return Party(**{**data, "address_lines": tuple(data["address_lines"])})


def _party_data(party: Party) -> dict[str, Any]:
    return {
        "name": party.name,
        "address_lines": list(party.address_lines),
        "country": party.country,
        "vat_id": party.vat_id,
        "email": party.email,
        "legal_form": party.legal_form,
        "registration": party.registration,
    }
