"""Money: integer minor units and an ISO 4217 currency, formatted by Babel."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies

DEFAULT_LOCALE = "en"


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def check_currency(currency: str) -> str:
    """`currency` when it is an ISO 4217 code Babel knows ('EUR'); ValueError otherwise."""
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise ValueError(f"currency must be an ISO 4217 code like 'EUR', not {currency!r}")
    if currency not in _currencies():
        raise ValueError(f"{currency!r} is not an ISO 4217 currency")
    return currency


def minor_digits(currency: str) -> int:
    """The digits after the decimal point of `currency` per ISO 4217 (JPY 0, EUR 2, KWD 3)."""
    return int(get_currency_precision(check_currency(currency)))


@cache
def check_locale(locale: str) -> str:
    """`locale` when Babel knows it ('en', 'fr_FR', 'de-CH'); ValueError otherwise."""
    try:
        Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"{locale!r} is not a known locale such as 'en' or 'fr_FR'") from None
    return locale


@dataclass(frozen=True)
class Money:
    """An amount in minor units (cents) of a currency."""

    amount_minor: int
    currency: str

    @classmethod
    def parse(cls, amount: str, currency: str) -> Money:
        """From a decimal string such as "1890.00"; more decimals than the currency has fail."""
        digits = minor_digits(currency)
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{amount!r} is not a decimal amount") from None
        if not value.is_finite():
            raise ValueError(f"{amount!r} is not a decimal amount")
        scaled = value.scaleb(digits)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount!r} has more decimals than {currency} allows ({digits})")
        return cls(int(scaled), currency)

    @property
    def units(self) -> Decimal:
        """The amount in major units, exactly: Money(189000, 'EUR').units == Decimal('1890.00')."""
        return Decimal(self.amount_minor).scaleb(-minor_digits(self.currency))

    def format(self, locale: str = DEFAULT_LOCALE) -> str:
        """As a reader of `locale` expects it: '€1,890.00' in en, '1 890,00 €' in fr_FR."""
        return str(
            format_currency(
                self.units,
                self.currency,
                locale=check_locale(locale).replace("-", "_"),
                currency_digits=True,
            )
        )

    @property
    def formatted(self) -> str:
        """In the default locale (en): '€1,890.00', '¥1,234', 'KWD1.234'."""
        return self.format(DEFAULT_LOCALE)
