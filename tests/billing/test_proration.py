"""Proration arithmetic: exact seconds of periods of every length, rounded half up."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

import pytest

from billing.money import Money
from billing.proration import portion, prorate, remaining_fraction
from limits import period_containing
from tests.support import at


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


# (case, anchor day, instant, current price, new price, credit, charge, due, carried)
CASES = [
    ("31-day March, mid-day on the 15th", 1, at(2026, 3, 15, 12), 189_000, 490_000,
     100_597, 260_806, 160_209, 0),
    ("28-day February, half way", 1, at(2026, 2, 15), 189_000, 490_000,
     94_500, 245_000, 150_500, 0),
    ("anchor 31 clamped to April 30 (30 days), 06:00", 31, at(2026, 4, 10, 6), 4_900, 19_000,
     3_226, 12_508, 9_282, 0),
    ("leap February 2028, last 12 hours", 1, at(2028, 2, 29, 12), 189_000, 69_000,
     3_259, 1_190, 0, 2_069),
    ("the period's first instant: all of it", 1, at(2026, 3, 1), 4_900, 19_000,
     4_900, 19_000, 14_100, 0),
    ("the period's last microsecond rounds to nothing", 1, at(2026, 3, 31, 23, 59, 59, 999_999),
     4_900, 19_000, 0, 0, 0, 0),
    ("a downgrade carries the difference as credit", 15, at(2026, 3, 30), 189_000, 69_000,
     97_548, 35_613, 0, 61_935),
]  # fmt: skip


@pytest.mark.parametrize(
    ("anchor", "instant", "current", "new", "credit", "charge", "due", "carried"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_proration_table(
    anchor: int,
    instant: datetime,
    current: int,
    new: int,
    credit: int,
    charge: int,
    due: int,
    carried: int,
) -> None:
    period = period_containing(instant, anchor)
    result = prorate(eur(current), eur(new), period, instant)
    assert (result.credit, result.charge) == (eur(credit), eur(charge))
    assert (result.amount_due, result.carried_credit) == (eur(due), eur(carried))


def test_the_fraction_counts_exact_seconds_not_days() -> None:
    march = period_containing(at(2026, 3, 15), 1)
    february = period_containing(at(2026, 2, 15), 1)
    assert remaining_fraction(march, at(2026, 3, 31, 12)) == Fraction(12, 31 * 24)
    assert remaining_fraction(february, at(2026, 2, 28, 12)) == Fraction(12, 28 * 24)


@pytest.mark.parametrize(
    ("minor", "fraction", "expected"),
    [(1, Fraction(1, 2), 1), (3, Fraction(1, 2), 2), (5, Fraction(1, 10), 1),
     (4, Fraction(1, 10), 0), (189_000, Fraction(1, 3), 63_000), (100, Fraction(1, 8), 13)],
)  # fmt: skip
def test_portions_round_half_up_to_the_minor_unit(
    minor: int, fraction: Fraction, expected: int
) -> None:
    assert portion(eur(minor), fraction) == eur(expected)


def test_zero_decimal_currencies_round_to_whole_units() -> None:
    assert portion(Money(1_000, "JPY"), Fraction(1, 3)) == Money(333, "JPY")


def test_refusals() -> None:
    march = period_containing(at(2026, 3, 15), 1)
    with pytest.raises(ValueError, match="different currencies"):
        prorate(eur(1), Money(1, "USD"), march, at(2026, 3, 15))
    with pytest.raises(ValueError, match="outside the period"):
        remaining_fraction(march, at(2026, 4, 2))
