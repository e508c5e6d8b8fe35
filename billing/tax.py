"""VAT on an invoice: which rate applies between a seller and a buyer, and how much it comes to."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from billing.settings import COUNTRY_CODES, country_of_vat_id, is_valid_vat_id
from core.resources import load_toml, packaged

BUILTIN_TAX_RATES = packaged("billing", "tax_rates.toml")
REVERSE_CHARGE_LABEL = "VAT reverse charge (Article 196, Directive 2006/112/EC)"
EXPORT_LABEL = "No VAT (export of services)"
_FULL_RATE = 10_000


class TaxError(ValueError):
    """The tax rates file is malformed, or a country is unknown."""


@dataclass(frozen=True)
class TaxDecision:
    """The rate an invoice carries, whether the buyer self-accounts for VAT, and its label."""

    rate_basis_points: int
    reverse_charge: bool
    label: str

    def __post_init__(self) -> None:
        if not 0 <= self.rate_basis_points <= _FULL_RATE:
            raise ValueError(f"a tax rate is 0 to 10000 basis points, not {self.rate_basis_points}")
        if self.reverse_charge and self.rate_basis_points:
            raise ValueError("a reverse-charge invoice carries no VAT")


@dataclass(frozen=True)
class CountryRate:
    """A country's standard rate in basis points (2000 = 20 %) and whether it is in the EU."""

    country: str
    rate_basis_points: int
    eu: bool
    tax_name: str = "VAT"

    @property
    def label(self) -> str:
        percent = Decimal(self.rate_basis_points).scaleb(-2).normalize()
        return f"{self.tax_name} {percent:f}%"


class TaxTable:
    """Standard rates per country; decides the tax of an invoice between two countries."""

    def __init__(self, rates: Iterable[CountryRate]) -> None:
        self._rates = {rate.country: rate for rate in rates}

    @classmethod
    def load(cls, path: Path | None = None) -> TaxTable:
        """The built-in table, or the one in `path` (same layout as billing/tax_rates.toml)."""
        document = load_toml(path, BUILTIN_TAX_RATES, "tax rates file", TaxError)
        source = document.source
        countries = document.data.get("countries")
        if not isinstance(countries, dict) or not countries:
            raise TaxError(f"tax rates file {source} has no [countries.<code>] table")
        return cls(_parse_country(code, table, source) for code, table in countries.items())

    def __iter__(self) -> Iterator[CountryRate]:
        return iter(self._rates.values())

    def __len__(self) -> int:
        return len(self._rates)

    def rate(self, country: str) -> CountryRate:
        """The entry of a country in the table; TaxError when the table lacks it."""
        code = _country_code(country)
        entry = self._rates.get(code)
        if entry is None:
            raise TaxError(
                f"no tax rate for country {code}; known: {', '.join(sorted(self._rates))}"
            )
        return entry

    def is_eu(self, country: str) -> bool:
        """True for an EU member state; a valid country missing from the table is outside the EU."""
        entry = self._rates.get(_country_code(country))
        return entry is not None and entry.eu

    def decide(
        self, seller_country: str, buyer_country: str | None, buyer_vat_id: str | None
    ) -> TaxDecision:
        """The tax of an invoice for electronically supplied services from a seller in
        `seller_country` to a buyer.

        A buyer's VAT ID counts only when python-stdnum accepts it (format and check digits);
        a buyer without a country takes the one of its valid VAT ID (EL: GR).
        - buyer in the seller's country, or of unknown country: the seller country's rate;
        - seller and buyer in two EU states, buyer with a valid VAT ID (a business):
          0 %, reverse charge (Article 196 of Directive 2006/112/EC);
        - same, buyer without one (a consumer, or a business without a VAT ID): the buyer
          country's rate (place of supply where the customer is, declared through OSS);
        - otherwise (buyer outside the EU, or a seller outside the EU billing abroad):
          0 %, not reverse charge, "No VAT (export of services)".
        """
        seller = self.rate(seller_country)
        vat_id = buyer_vat_id.strip() if buyer_vat_id else ""
        business = bool(vat_id) and is_valid_vat_id(vat_id)
        if buyer_country is None and business:
            buyer_country = country_of_vat_id(vat_id)
        if buyer_country is None or _country_code(buyer_country) == seller.country:
            return TaxDecision(seller.rate_basis_points, False, seller.label)
        if seller.eu and self.is_eu(buyer_country):
            if business:
                return TaxDecision(0, True, REVERSE_CHARGE_LABEL)
            buyer = self.rate(buyer_country)
            return TaxDecision(buyer.rate_basis_points, False, buyer.label)
        return TaxDecision(0, False, EXPORT_LABEL)


def tax_amount(net_minor: int, rate_basis_points: int) -> int:
    """The tax on a net amount in minor units, rounded half up (away from zero) to a minor unit."""
    exact = Decimal(net_minor) * rate_basis_points / _FULL_RATE
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _country_code(country: str) -> str:
    code = country.strip().upper()
    if code not in COUNTRY_CODES:
        raise TaxError(f"{country!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _parse_country(code: str, table: Any, source: str) -> CountryRate:
    where = f"{source}: country {code!r}"
    if code not in COUNTRY_CODES:
        raise TaxError(f"{where} is not an uppercase ISO 3166-1 alpha-2 code")
    if not isinstance(table, dict):
        raise TaxError(f"{where} must be a table")
    rate = table.get("rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= _FULL_RATE:
        raise TaxError(
            f"{where} needs rate as an integer in basis points, 0 to 10000 (2000 = 20 %)"
        )
    eu = table.get("eu")
    if not isinstance(eu, bool):
        raise TaxError(f"{where} needs eu = true or false")
    tax_name = table.get("tax", "VAT")
    if not isinstance(tax_name, str) or not tax_name.strip():
        raise TaxError(f"{where}: tax must be a non-empty string")
    return CountryRate(code, rate, eu, tax_name.strip())
