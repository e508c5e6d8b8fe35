"""The content of an invoice, whatever stores or renders it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from billing.money import Money
from billing.settings import BillingSettings
from billing.tax import TaxDecision, tax_amount

REVERSE_CHARGE_NOTE = "VAT reverse charge: the buyer accounts for the VAT"
LATE_PAYMENT_NOTE = (
    "Late payment: interest at the European Central Bank's most recent refinancing rate plus "
    "10 percentage points (article L441-10 of the Code de commerce), and a fixed indemnity of "
    "EUR 40 for recovery costs (article D441-5 of the Code de commerce)."
)
NO_DISCOUNT_NOTE = "No discount for early payment."
UNIT_PRICE_LABEL = "Unit price (excl. VAT)"
AMOUNT_LABEL = "Amount (excl. VAT)"
SUBTOTAL_LABEL = "Subtotal (excl. VAT)"
TOTAL_LABEL = "Total (incl. VAT)"
INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Party:
    """The seller or the buyer as printed on the invoice."""

    name: str
    address_lines: tuple[str, ...] = ()
    country: str | None = None
    vat_id: str | None = None
    email: str | None = None
    legal_form: str | None = None
    registration: str | None = None

    @property
    def details(self) -> list[str]:
        """The lines printed under the name: address, country, legal form, registration, VAT
        ID, email."""
        lines = [*self.address_lines]
        if self.country:
            lines.append(self.country)
        if self.legal_form:
            lines.append(self.legal_form)
        if self.registration:
            lines.append(self.registration)
        if self.vat_id:
            lines.append(f"VAT ID: {self.vat_id}")
        if self.email:
            lines.append(self.email)
        return lines

    @classmethod
    def from_settings(cls, settings: BillingSettings, fallback_name: str) -> Party:
        """The buyer from an organization's billing settings; `fallback_name` when no legal name."""
        locality = " ".join(part for part in (settings.postal_code, settings.city) if part)
        lines = (settings.address_line1, settings.address_line2, locality)
        return cls(
            name=settings.legal_name or fallback_name,
            address_lines=tuple(line for line in lines if line),
            country=settings.country,
            vat_id=settings.vat_id,
            email=settings.billing_email,
        )


@dataclass(frozen=True)
class InvoiceLine:
    """One line: what is billed, how many, at what unit price, for what amount (minor units)."""

    description: str
    quantity: int
    unit_amount_minor: int
    amount_minor: int

    @classmethod
    def of(cls, description: str, quantity: int, unit_amount_minor: int) -> InvoiceLine:
        """A line whose amount is quantity times unit price."""
        return cls(description, quantity, unit_amount_minor, quantity * unit_amount_minor)


@dataclass(frozen=True)
class InvoiceDocument:
    """An invoice (or a credit note, `kind`) as issued; made with `build`, which computes the
    totals from the lines.

    Tax is computed once on the subtotal, rounded half up (away from zero, so a credit note's
    negative VAT mirrors the invoice's). Constructing one directly with totals that do not add
    up raises ValueError. A credit note names the invoice it reverses (`credited_number`).
    """

    number: str
    issued_on: date
    period_start: date | None
    period_end: date | None
    seller: Party
    buyer: Party
    lines: tuple[InvoiceLine, ...]
    currency: str
    subtotal_minor: int
    tax: TaxDecision
    tax_minor: int
    total_minor: int
    status: str
    kind: str = INVOICE
    due_on: date | None = None
    credited_number: str | None = None

    @classmethod
    def build(
        cls,
        *,
        number: str,
        issued_on: date,
        seller: Party,
        buyer: Party,
        lines: Iterable[InvoiceLine],
        currency: str,
        tax: TaxDecision,
        status: str = "open",
        period_start: date | None = None,
        period_end: date | None = None,
        kind: str = INVOICE,
        due_on: date | None = None,
        credited_number: str | None = None,
    ) -> InvoiceDocument:
        """The document with its subtotal, tax and total computed from the lines."""
        items = tuple(lines)
        subtotal = sum(line.amount_minor for line in items)
        tax_minor = tax_amount(subtotal, tax.rate_basis_points)
        return cls(
            number=number,
            issued_on=issued_on,
            period_start=period_start,
            period_end=period_end,
            seller=seller,
            buyer=buyer,
            lines=items,
            currency=currency,
            subtotal_minor=subtotal,
            tax=tax,
            tax_minor=tax_minor,
            total_minor=subtotal + tax_minor,
            status=status,
            kind=kind,
            due_on=due_on,
            credited_number=credited_number,
        )

    def __post_init__(self) -> None:
        if not self.number.strip():
            raise ValueError("an invoice needs a number")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'EUR', not {self.currency!r}")
        if self.period_start and self.period_end and self.period_end < self.period_start:
            raise ValueError(
                f"period ends ({self.period_end}) before it starts ({self.period_start})"
            )
        if self.subtotal_minor != sum(line.amount_minor for line in self.lines):
            raise ValueError("subtotal_minor is not the sum of the lines")
        if self.tax_minor != tax_amount(self.subtotal_minor, self.tax.rate_basis_points):
            raise ValueError("tax_minor does not follow from the subtotal and the tax rate")
        if self.total_minor != self.subtotal_minor + self.tax_minor:
            raise ValueError("total_minor is not subtotal plus tax")
        if self.kind not in (INVOICE, CREDIT_NOTE):
            raise ValueError(f"a document is an invoice or a credit note, not {self.kind!r}")
        if (self.kind == CREDIT_NOTE) != (self.credited_number is not None):
            raise ValueError("a credit note, and only a credit note, names the invoice it credits")
        if self.due_on is not None and self.due_on < self.issued_on:
            raise ValueError(f"due date ({self.due_on}) before the issue date ({self.issued_on})")

    def money(self, amount_minor: int) -> Money:
        """An amount of this invoice's currency."""
        return Money(amount_minor, self.currency)

    @property
    def subtotal(self) -> Money:
        return self.money(self.subtotal_minor)

    @property
    def tax_total(self) -> Money:
        return self.money(self.tax_minor)

    @property
    def total(self) -> Money:
        return self.money(self.total_minor)

    @property
    def title(self) -> str:
        """'Invoice' or 'Credit note'."""
        return "Credit note" if self.kind == CREDIT_NOTE else "Invoice"

    @property
    def facts(self) -> list[tuple[str, str]]:
        """The header's facts, label and value, in print order."""
        facts = [(f"{self.title} number", self.number), ("Date", format_date(self.issued_on))]
        if self.credited_number is not None:
            facts.append(("Credits invoice", self.credited_number))
        if self.period is not None:
            facts.append(("Billing period", self.period))
        if self.due_on is not None:
            facts.append(("Due date", format_date(self.due_on)))
        facts.append(("Status", self.status.capitalize()))
        return facts

    @property
    def mentions(self) -> list[str]:
        """The notes printed under the totals: payment terms, the reverse charge, and for a
        B2B buyer of a French seller the late-payment penalties (Code de commerce L441-10)."""
        notes = []
        if self.due_on is not None:
            days = (self.due_on - self.issued_on).days
            terms = "on receipt" if days == 0 else f"within {days} days of the invoice date"
            notes.append(f"Payment terms: {terms}, by {format_date(self.due_on)}.")
        if self.tax.reverse_charge:
            notes.append(REVERSE_CHARGE_NOTE)
        if self.kind == INVOICE and self.seller.country == "FR" and self.buyer.vat_id:
            notes += [LATE_PAYMENT_NOTE, NO_DISCOUNT_NOTE]
        return notes

    @property
    def period(self) -> str | None:
        """'1 March 2026 to 31 March 2026' (first and last day of service, both included), or
        None without a billing period."""
        if self.period_start and self.period_end:
            return format_period(self.period_start, self.period_end)
        if self.period_start:
            return f"from {format_date(self.period_start)}"
        if self.period_end:
            return f"until {format_date(self.period_end)}"
        return None


def format_period(first: date, last: date) -> str:
    """A service period, its first and last day included: '1 March 2026 to 31 March 2026'.
    Every period on a document (header and lines) is printed with this."""
    return f"{format_date(first)} to {format_date(last)}"


def format_date(day: date) -> str:
    """'15 March 2026', whatever the locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
