"""The plan catalog: prices per currency, overage per currency, and the single-currency form."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.catalog import Catalog, CatalogError, CurrencyNotOffered
from billing.money import Money
from core.errors import ErrorCode, InvalidInput
from tests.support import write_plans

MULTI = """
[plans.pro]
name = "Pro"
price_monthly = { EUR = "1890.00", USD = "1990.00", JPY = "290000" }
[plans.pro.limits]
tokens = 1000
[plans.pro.policies]
tokens = "overage"
[plans.pro.overage]
tokens = { EUR = "0.002", USD = "0.0025", JPY = "0.3" }

[plans.solo]
name = "Solo"
price_monthly = "10.00"
currency = "USD"
[plans.solo.overage]
tokens = "0.01"
"""


def load(tmp_path: Path, text: str) -> Catalog:
    return Catalog.load(write_plans(tmp_path / "plans.toml", text))


def test_prices_per_currency(tmp_path: Path) -> None:
    catalog = load(tmp_path, MULTI)
    pro, solo = catalog.get("pro"), catalog.get("solo")
    assert pro.currencies == ("EUR", "USD", "JPY") and pro.currency == "EUR"
    assert pro.price("USD") == Money(199_000, "USD")
    assert pro.price("JPY") == Money(290_000, "JPY")
    assert pro.price_monthly == Money(189_000, "EUR")
    assert pro.offers("JPY") and not pro.offers("GBP")
    assert pro.overage_price("tokens") == Decimal("0.002")
    assert pro.overage_price("tokens", "USD") == Decimal("0.0025")
    assert pro.overage_price("documents", "USD") is None
    assert solo.currencies == ("USD",)
    assert solo.overage_price("tokens", "USD") == Decimal("0.01")
    assert [plan.id for plan in catalog] == ["solo", "pro"]


def test_a_currency_not_offered_is_refused_naming_the_offered_ones(tmp_path: Path) -> None:
    catalog = load(tmp_path, MULTI)
    with pytest.raises(CurrencyNotOffered) as raised:
        catalog.get("solo").price("EUR")
    error = raised.value
    assert isinstance(error, InvalidInput)
    assert error.code is ErrorCode.CURRENCY_NOT_OFFERED and error.field == "currency"
    assert error.message == "plan 'solo' is not offered in EUR; it is offered in USD"
    with pytest.raises(CurrencyNotOffered, match="offered in EUR, USD, JPY"):
        catalog.get("pro").overage_price("tokens", "GBP")


def test_currency_names_the_default_of_a_table(tmp_path: Path) -> None:
    text = '[plans.x]\nname = "X"\ncurrency = "USD"\nprice_monthly = { EUR = "1", USD = "2" }\n'
    plan = load(tmp_path, text).get("x")
    assert plan.currencies == ("USD", "EUR")
    assert plan.price_monthly == Money(200, "USD")


def test_builtin_plans_are_offered_in_euros_and_dollars() -> None:
    catalog = Catalog.load()
    for plan in catalog:
        assert plan.currencies == ("EUR", "USD")
        assert plan.price("USD").amount_minor > plan.price("EUR").amount_minor
    scale = catalog.get("scale")
    assert scale.overage_price("tokens", "EUR") == Decimal("0.000002")
    assert scale.overage_price("tokens", "USD") == Decimal("0.0000022")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "X"\nprice_monthly = "1.00"\n', "needs currency as a string"),
        ('name = "X"\nprice_monthly = 1\ncurrency = "EUR"\n', "needs price_monthly"),
        ('name = "X"\nprice_monthly = {}\n', "needs price_monthly"),
        ('name = "X"\nprice_monthly = { EUR = 1 }\n', "price_monthly EUR must be a string"),
        ('name = "X"\nprice_monthly = { EUR = "1.005" }\n', "more decimals than EUR"),
        ('name = "X"\nprice_monthly = { JPY = "1.5" }\n', "more decimals than JPY"),
        ('name = "X"\nprice_monthly = { ABC = "1" }\n', "not an ISO 4217 currency"),
        ('name = "X"\nprice_monthly = { EUR = "-1" }\n', "must not be negative"),
        ('name = "X"\nprice_monthly = { EUR = "1" }\ncurrency = "USD"\n', "currency USD is not"),
        (
            'name = "X"\nprice_monthly = { EUR = "1", USD = "2" }\n'
            '[plans.x.overage]\ntokens = "0.1"\n',
            "needs a table with a price per currency (EUR, USD)",
        ),
        (
            'name = "X"\nprice_monthly = { EUR = "1", USD = "2" }\n'
            '[plans.x.overage]\ntokens = { EUR = "0.1" }\n',
            "needs a price in each of the plan's currencies (EUR, USD), not EUR",
        ),
        (
            'name = "X"\nprice_monthly = { EUR = "1" }\n[plans.x.overage]\ntokens = { EUR = 1 }\n',
            "overage tokens must be a decimal string",
        ),
    ],
)
def test_malformed_prices(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match="plan 'x'") as raised:
        load(tmp_path, "[plans.x]\n" + text)
    assert message in str(raised.value)
