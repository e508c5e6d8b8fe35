"""The content of an invoice, whatever stores or renders it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from billing.money import Money
from billing.settings import BillingSettings
from billing.tax import TaxDecision, tax_amount

REVERSE_CHARGE_NOTE = "VAT reverse charge: the buyer accounts for the VAT"
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
    """An invoice as issued; made with `build`, which computes the totals from the lines.

    Tax is computed once on the subtotal, rounded half up. Constructing one directly with
    totals that do not add up raises ValueError.
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
    ) -> InvoiceDocument:
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
    def period(self) -> str | None:
        """'1 March 2026 to 31 March 2026', or None without a billing period."""
        if self.period_start and self.period_end:
            return f"{format_date(self.period_start)} to {format_date(self.period_end)}"
        if self.period_start:
            return f"from {format_date(self.period_start)}"
        if self.period_end:
            return f"until {format_date(self.period_end)}"
        return None


def format_date(day: date) -> str:
    """'15 March 2026', whatever the locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
