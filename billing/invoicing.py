"""Issuing local invoices: gap-free numbers, the buyer's tax, a stored document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository
from billing.local.documents import InvoiceDocument, InvoiceLine, Party
from billing.models import Invoice
from billing.org_settings import settings_of
from billing.tax import TaxDecision, TaxTable
from core.clock import Clock
from core.orgs import Organization


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
    """Issues an organization's local invoices, each once per `source`."""

    def __init__(self, taxes: TaxTable, seller: Party, clock: Clock, prefix: str = "TAL") -> None:
        if seller.country is None:
            raise ValueError("the seller needs a country to decide taxes")
        self.taxes = taxes
        self.seller = seller
        self.clock = clock
        self.prefix = prefix

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
        """The invoice for `source`, created with the next number unless it exists already."""
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
        settings = await settings_of(session, organization.id)
        assert self.seller.country is not None
        document = InvoiceDocument.build(
            number=invoice_number(series, sequence),
            issued_on=issued_on,
            seller=self.seller,
            buyer=Party.from_settings(settings, organization.name),
            lines=lines,
            currency=currency,
            tax=self.taxes.decide(self.seller.country, settings.country, settings.vat_id),
            period_start=period_start,
            period_end=period_end,
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
    }


def stored_document(invoice: Invoice) -> InvoiceDocument:
    """The document of a local invoice as issued, with the invoice's current status."""
    data = invoice.document
    if data is None:
        raise ValueError(f"invoice {invoice.number} has no stored document")
    rate, reverse_charge, label = data["tax"]
    return InvoiceDocument.build(
        number=invoice.number,
        issued_on=invoice.issued_on,
        seller=Party(**{**data["seller"], "address_lines": tuple(data["seller"]["address_lines"])}),
        buyer=Party(**{**data["buyer"], "address_lines": tuple(data["buyer"]["address_lines"])}),
        lines=[InvoiceLine(*line) for line in data["lines"]],
        currency=invoice.currency,
        tax=TaxDecision(rate, reverse_charge, label),
        status=invoice.status,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )


def _party_data(party: Party) -> dict[str, Any]:
    return {
        "name": party.name,
        "address_lines": list(party.address_lines),
        "country": party.country,
        "vat_id": party.vat_id,
        "email": party.email,
    }
