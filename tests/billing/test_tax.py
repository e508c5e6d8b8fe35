"""Tax decisions between countries, the built-in rates, and rounding."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.tax import (
    EXPORT_LABEL,
    REVERSE_CHARGE_LABEL,
    TaxDecision,
    TaxError,
    TaxTable,
    tax_amount,
)

EU_MEMBERS = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
}  # fmt: skip


@pytest.fixture(scope="module")
def table() -> TaxTable:
    return TaxTable.load()


FR_VAT_ID = "FR40303265045"
DE_VAT_ID = "DE136695976"
BE_VAT_ID = "BE0403019261"
EL_VAT_ID = "EL094259216"


@pytest.mark.parametrize(
    ("seller", "buyer", "vat_id", "expected"),
    [
        ("FR", "FR", None, TaxDecision(2000, False, "VAT 20%")),
        ("FR", "FR", FR_VAT_ID, TaxDecision(2000, False, "VAT 20%")),
        ("FR", "DE", DE_VAT_ID, TaxDecision(0, True, REVERSE_CHARGE_LABEL)),
        ("FR", "BE", "BE 0403.019.261", TaxDecision(0, True, REVERSE_CHARGE_LABEL)),
        ("DE", "GR", EL_VAT_ID, TaxDecision(0, True, REVERSE_CHARGE_LABEL)),
        ("FR", "US", None, TaxDecision(0, False, EXPORT_LABEL)),
        ("FR", "CH", "CHE116281710MWST", TaxDecision(0, False, EXPORT_LABEL)),
        ("FR", "JP", None, TaxDecision(0, False, EXPORT_LABEL)),
        ("GB", "FR", FR_VAT_ID, TaxDecision(0, False, EXPORT_LABEL)),
        ("FR", None, None, TaxDecision(2000, False, "VAT 20%")),
        ("fi", "fi", None, TaxDecision(2550, False, "VAT 25.5%")),
        ("CH", "CH", None, TaxDecision(810, False, "VAT 8.1%")),
        ("US", "US", None, TaxDecision(0, False, "Sales tax 0%")),
    ],
)
def test_decide(
    table: TaxTable, seller: str, buyer: str | None, vat_id: str | None, expected: TaxDecision
) -> None:
    assert table.decide(seller, buyer, vat_id) == expected


@pytest.mark.parametrize(
    ("buyer", "vat_id", "expected"),
    [
        ("BE", None, TaxDecision(2100, False, "VAT 21%")),
        ("DE", None, TaxDecision(1900, False, "VAT 19%")),
        ("DE", "  ", TaxDecision(1900, False, "VAT 19%")),
        ("HU", None, TaxDecision(2700, False, "VAT 27%")),
        ("LU", None, TaxDecision(1700, False, "VAT 17%")),
        ("GR", None, TaxDecision(2400, False, "VAT 24%")),
    ],
)
def test_eu_consumer_pays_its_own_countrys_rate(
    table: TaxTable, buyer: str, vat_id: str | None, expected: TaxDecision
) -> None:
    """OSS: electronically supplied services to an EU buyer without a VAT ID (a Belgian
    person, a German company without one) carry the buyer country's rate, not the seller's."""
    assert table.decide("FR", buyer, vat_id) == expected


@pytest.mark.parametrize("vat_id", ["DE000000000", "DE123456789", "DE13669597"])
def test_invalid_vat_id_is_no_reason_for_reverse_charge(table: TaxTable, vat_id: str) -> None:
    assert table.decide("FR", "DE", vat_id) == TaxDecision(1900, False, "VAT 19%")
    assert table.decide("FR", "FR", "FR00303265045") == TaxDecision(2000, False, "VAT 20%")


@pytest.mark.parametrize(
    ("seller", "vat_id", "expected"),
    [
        ("FR", DE_VAT_ID, TaxDecision(0, True, REVERSE_CHARGE_LABEL)),
        ("FR", EL_VAT_ID, TaxDecision(0, True, REVERSE_CHARGE_LABEL)),
        ("DE", DE_VAT_ID, TaxDecision(1900, False, "VAT 19%")),
        ("FR", "GB980780684", TaxDecision(0, False, EXPORT_LABEL)),
        ("FR", "DE000000000", TaxDecision(2000, False, "VAT 20%")),
    ],
)
def test_buyer_without_country_takes_its_vat_ids(
    table: TaxTable, seller: str, vat_id: str, expected: TaxDecision
) -> None:
    """A VAT ID without a country is not billed as domestic: its prefix names the country."""
    assert table.decide(seller, None, vat_id) == expected


@pytest.mark.parametrize(
    ("seller", "buyer"), [("XX", "FR"), ("FR", "ZZ"), ("FR", "EL"), ("JP", "FR")]
)
def test_unknown_country_fails(table: TaxTable, seller: str, buyer: str) -> None:
    with pytest.raises(TaxError):
        table.decide(seller, buyer, None)


def test_builtin_table_has_every_eu_member_and_the_others(table: TaxTable) -> None:
    assert {rate.country for rate in table if rate.eu} == EU_MEMBERS
    assert {rate.country for rate in table if not rate.eu} == {"GB", "CH", "NO", "US"}
    assert table.rate("FR").rate_basis_points == 2000
    assert table.rate("DE").rate_basis_points == 1900
    assert table.rate("HU").rate_basis_points == 2700
    assert table.rate("LU").rate_basis_points == 1700
    assert table.rate("US").rate_basis_points == 0
    assert all(rate.rate_basis_points > 0 for rate in table if rate.eu)


@pytest.mark.parametrize(
    ("net", "rate", "expected"),
    [
        (189_000, 2000, 37_800),
        (0, 2000, 0),
        (100, 0, 0),
        (1, 1900, 0),
        (5, 1000, 1),
        (25, 2000, 5),
        (3, 1650, 0),
        (1_000, 2550, 255),
        (2, 2500, 1),
        (6, 2500, 2),
        (-5, 1000, -1),
        (10_001, 810, 810),
        (123_456_789, 2100, 25_925_926),
    ],
)
def test_tax_amount_rounds_half_up(net: int, rate: int, expected: int) -> None:
    assert tax_amount(net, rate) == expected


def test_decision_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="reverse-charge"):
        TaxDecision(2000, True, "VAT 20%")
    with pytest.raises(ValueError, match="basis points"):
        TaxDecision(-1, False, "VAT")


def test_load_custom_table(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text(
        "[countries.FR]\nrate = 550\neu = true\n[countries.BE]\nrate = 600\neu = true\n"
        '[countries.CA]\nrate = 500\neu = false\ntax = "GST"\n',
        encoding="utf-8",
    )
    table = TaxTable.load(path)
    assert len(table) == 3
    assert table.decide("FR", "FR", None) == TaxDecision(550, False, "VAT 5.5%")
    assert table.decide("CA", None, None) == TaxDecision(500, False, "GST 5%")
    assert table.decide("FR", "BE", "BE0403019261").reverse_charge
    assert table.decide("FR", "BE", None) == TaxDecision(600, False, "VAT 6%")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[countries.FR]\nrate = '20%'\neu = true\n", "country 'FR' needs rate"),
        ("[countries.FR]\nrate = 20000\neu = true\n", "country 'FR' needs rate"),
        ("[countries.FR]\nrate = 2000\n", "country 'FR' needs eu"),
        ("[countries.France]\nrate = 2000\neu = true\n", "country 'France'"),
        ("[countries]\nFR = 2000\n", "country 'FR' must be a table"),
        ("[countries.FR]\nrate = 2000\neu = true\ntax = ''\n", "tax must be"),
        ("rates = 1\n", "no [countries.<code>] table"),
        ("[countries.FR\n", "not valid TOML"),
    ],
)
def test_malformed_file_names_file_and_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rates.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaxError, match=r"rates\.toml") as raised:
        TaxTable.load(path)
    assert message in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaxError, match="cannot read tax rates file"):
        TaxTable.load(tmp_path / "absent.toml")
