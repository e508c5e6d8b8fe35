"""Money: parsing to minor units and formatting with Babel, per currency and locale."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from billing.money import Money, check_locale, minor_digits


@pytest.mark.parametrize(
    ("currency", "digits"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3)]
)
def test_minor_digits_come_from_babel(currency: str, digits: int) -> None:
    assert minor_digits(currency) == digits


@pytest.mark.parametrize(
    ("money", "english"),
    [
        (Money(1_234, "JPY"), "¥1,234"),
        (Money(189_000, "EUR"), "€1,890.00"),
        (Money(199_000, "USD"), "$1,990.00"),
        (Money(-1_050, "USD"), "-$10.50"),
        (Money(1_234, "KWD"), "KWD1.234"),
        (Money(5, "KWD"), "KWD0.005"),
        (Money(0, "EUR"), "€0.00"),
    ],
)
def test_formatted_in_english(money: Money, english: str) -> None:
    assert money.formatted == english
    assert money.format("en") == english


@pytest.mark.parametrize(
    ("money", "locale", "expected"),
    [
        (Money(189_000, "EUR"), "fr_FR", "1\u202f890,00\xa0€"),
        (Money(189_000, "EUR"), "de", "1.890,00\xa0€"),
        (Money(199_000, "USD"), "en_US", "$1,990.00"),
        (Money(1_234, "JPY"), "ja", "￥1,234"),
        (Money(1_234, "KWD"), "fr", "1,234\xa0KWD"),
        (Money(189_000, "EUR"), "de-CH", "EUR\xa01'890.00"),
    ],
)
def test_format_in_a_locale(money: Money, locale: str, expected: str) -> None:
    assert money.format(locale) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.234", "KWD", Money(1_234, "KWD")),
        ("0.005", "KWD", Money(5, "KWD")),
        ("1234", "JPY", Money(1_234, "JPY")),
        ("1890.00", "EUR", Money(189_000, "EUR")),
        ("1890", "EUR", Money(189_000, "EUR")),
        ("-10.5", "USD", Money(-1_050, "USD")),
    ],
)
def test_parse(amount: str, currency: str, expected: Money) -> None:
    assert Money.parse(amount, currency) == expected


def test_units_round_trip() -> None:
    assert Money(1_234, "KWD").units == Decimal("1.234")
    assert Money.parse(str(Money(1_234, "JPY").units), "JPY") == Money(1_234, "JPY")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("1.5", "JPY", "more decimals than JPY allows (0)"),
        ("1.2345", "KWD", "more decimals than KWD allows (3)"),
        ("1.005", "EUR", "more decimals than EUR allows (2)"),
        ("abc", "EUR", "not a decimal amount"),
        ("NaN", "EUR", "not a decimal amount"),
        ("Infinity", "USD", "not a decimal amount"),
        ("1.00", "eur", "ISO 4217 code"),
        ("1.00", "EURO", "ISO 4217 code"),
        ("1.00", "ABC", "not an ISO 4217 currency"),
    ],
)
def test_parse_refuses(amount: str, currency: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Money.parse(amount, currency)


def test_unknown_locale_is_refused() -> None:
    assert check_locale("fr_FR") == "fr_FR"
    with pytest.raises(ValueError, match="not a known locale"):
        Money(100, "EUR").format("xx_YY")
