"""Proration: what the rest of a billing period is worth, to the minor unit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from billing.money import Money
from limits import Period

_MICROSECOND = timedelta(microseconds=1)


def remaining_fraction(period: Period, at: datetime) -> Fraction:
    """The part of `period` still to come at `at`, exactly (0 before the end, 1 at the start)."""
    if at < period.start or at > period.end:
        raise ValueError(f"{at.isoformat()} is outside the period {period.start} - {period.end}")
    return Fraction((period.end - at) // _MICROSECOND, (period.end - period.start) // _MICROSECOND)


def portion(money: Money, fraction: Fraction) -> Money:
    """`fraction` of an amount, rounded half up to a minor unit."""
    if fraction < 0:
        raise ValueError("a portion is never negative")
    exact = money.amount_minor * fraction
    return Money(
        (2 * exact.numerator + exact.denominator) // (2 * exact.denominator), money.currency
    )


@dataclass(frozen=True)
class Proration:
    """A change of price within a period, at `at`.

    `credit` is the current price for the unused time, `charge` the new price for the same
    time; `amount_due` what is billed now; `carried_credit` what the change gives back beyond
    the charge, kept as a credit balance for the next invoices.
    """

    at: datetime
    fraction: Fraction
    credit: Money
    charge: Money

    @property
    def amount_due(self) -> Money:
        return Money(max(self.charge.amount_minor - self.credit.amount_minor, 0), self.currency)

    @property
    def carried_credit(self) -> Money:
        return Money(max(self.credit.amount_minor - self.charge.amount_minor, 0), self.currency)

    @property
    def currency(self) -> str:
        return self.charge.currency


def prorate(current: Money, new: Money, period: Period, at: datetime) -> Proration:
    """The proration of a change from the `current` price to the `new` one at `at`."""
    if current.currency != new.currency:
        raise ValueError(
            f"cannot prorate between {current.currency} and {new.currency}: "
            "plans of different currencies"
        )
    fraction = remaining_fraction(period, at)
    return Proration(at, fraction, portion(current, fraction), portion(new, fraction))


def no_proration(currency: str, at: datetime) -> Proration:
    """A change that costs nothing now (it waits for the period's end)."""
    return Proration(at, Fraction(0), Money(0, currency), Money(0, currency))
