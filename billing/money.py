"""Money: integer minor units and an ISO 4217 currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "VND", "ISK", "HUF"})
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


def minor_digits(currency: str) -> int:
    return 0 if currency in _ZERO_DECIMAL else 2


@dataclass(frozen=True)
class Money:
    """An amount in minor units (cents) of a currency."""

    amount_minor: int
    currency: str

    @classmethod
    def parse(cls, amount: str, currency: str) -> Money:
        """From a decimal string such as "1890.00"; more decimals than the currency has fail."""
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'EUR', not {currency!r}")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{amount!r} is not a decimal amount") from None
        scaled = value.scaleb(minor_digits(currency))
        if scaled != scaled.to_integral_value() or not value.is_finite():
            raise ValueError(f"{amount!r} has more decimals than {currency} allows")
        return cls(int(scaled), currency)

    @property
    def formatted(self) -> str:
        """'€1,890.00', or '1,890.00 CHF' where no symbol is known."""
        digits = minor_digits(self.currency)
        sign = "-" if self.amount_minor < 0 else ""
        units = Decimal(abs(self.amount_minor)).scaleb(-digits)
        number = f"{units:,.{digits}f}"
        symbol = _SYMBOLS.get(self.currency)
        return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {self.currency}"
