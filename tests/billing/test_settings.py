"""Validation and normalization of an organization's billing settings."""

from __future__ import annotations

import pytest

from billing.settings import (
    COUNTRY_CODES,
    BillingSettings,
    SettingsError,
    country_of_vat_id,
    is_valid_vat_id,
    validate_settings,
)
from core.errors import InvalidInput

EMPTY = BillingSettings()


def refused(changes: dict[str, str | None], current: BillingSettings = EMPTY) -> SettingsError:
    with pytest.raises(SettingsError) as raised:
        validate_settings(current, changes)
    return raised.value


def test_full_update_is_normalized() -> None:
    result = validate_settings(
        EMPTY,
        {
            "legal_name": "  Acme SAS ",
            "billing_email": " billing@acme.example ",
            "address_line1": "1 rue de Rivoli",
            "address_line2": "   ",
            "postal_code": "75001",
            "city": "Paris",
            "country": "fr",
            "vat_id": "fr 40-303.265.045",
        },
    )
    assert result == BillingSettings(
        legal_name="Acme SAS",
        billing_email="billing@acme.example",
        address_line1="1 rue de Rivoli",
        address_line2=None,
        postal_code="75001",
        city="Paris",
        country="FR",
        vat_id="FR40303265045",
    )


def test_untouched_fields_are_kept_and_none_clears() -> None:
    current = BillingSettings(legal_name="Acme", city="Paris", country="FR")
    result = validate_settings(current, {"city": None, "legal_name": ""})
    assert result == BillingSettings(country="FR")
    assert validate_settings(current, {}) == current


@pytest.mark.parametrize(
    "email",
    [
        "a@b.co",
        "first.last@example.com",
        "billing+invoices@sub.example.co.uk",
        "o'brien@example.ie",
        "x_y-z@my-domain.example",
    ],
)
def test_good_emails(email: str) -> None:
    assert validate_settings(EMPTY, {"billing_email": email}).billing_email == email


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "@example.com",
        "name@",
        "name@example",
        "name@@example.com",
        "name@example..com",
        "name@-example.com",
        ".name@example.com",
        "na..me@example.com",
        "name @example.com",
        "name@example.c",
        f"{'a' * 65}@example.com",
        f"name@{'a' * 320}.com",
    ],
)
def test_bad_emails(email: str) -> None:
    error = refused({"billing_email": email})
    assert error.field == "billing_email"


@pytest.mark.parametrize(("given", "expected"), [("FR", "FR"), ("de", "DE"), (" gr ", "GR")])
def test_good_countries(given: str, expected: str) -> None:
    assert validate_settings(EMPTY, {"country": given}).country == expected


@pytest.mark.parametrize("country", ["XX", "EL", "UK", "FRA", "F", "E1"])
def test_bad_countries(country: str) -> None:
    error = refused({"country": country})
    assert error.field == "country"
    assert "ISO 3166-1" in error.message


@pytest.mark.parametrize("country", ["EU", "EZ", "UN", "QO", "ZZ", "001", "150"])
def test_regions_of_babel_are_no_countries(country: str) -> None:
    assert refused({"country": country}).field == "country"


def test_countries_come_from_babel() -> None:
    assert {"FR", "DE", "GR", "GB", "CH", "US", "AX", "BQ", "SS", "SX", "CW", "XK"} <= COUNTRY_CODES
    assert not {"EL", "UK", "EU", "UN", "ZZ", "AN"} & COUNTRY_CODES
    assert 249 <= len(COUNTRY_CODES) < 260


@pytest.mark.parametrize(
    ("country", "given", "expected"),
    [
        ("AT", "ATU13585627", "ATU13585627"),
        ("BE", "BE 0403.019.261", "BE0403019261"),
        ("DE", "de136695976", "DE136695976"),
        ("FR", "FR 40 303265045", "FR40303265045"),
        ("FR", "FRK7399859412", "FRK7399859412"),
        ("IT", "IT00743110157", "IT00743110157"),
        ("ES", "ESX2482300W", "ESX2482300W"),
        ("ES", "ES-B58378431", "ESB58378431"),
        ("NL", "NL004495445B01", "NL004495445B01"),
        ("IE", "IE6388047V", "IE6388047V"),
        ("IE", "IE8D79739I", "IE8D79739I"),
        ("PL", "PL8567346215", "PL8567346215"),
        ("SE", "SE556188840401", "SE556188840401"),
        ("DK", "DK 13 58 56 28", "DK13585628"),
        ("GR", "EL094259216", "EL094259216"),
        ("GB", "GB 980 7806 84", "GB980780684"),
        ("GB", "XI980780684", "XI980780684"),
        ("CH", "CHE-116.281.710 MWST", "CHE116281710MWST"),
        ("NO", "NO 995 525 828 MVA", "NO995525828MVA"),
        (None, "LU15027442", "LU15027442"),
    ],
)
def test_good_vat_ids(country: str | None, given: str, expected: str) -> None:
    result = validate_settings(EMPTY, {"country": country, "vat_id": given})
    assert result.vat_id == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("DE000000000", "not a valid DE VAT ID"),
        ("FR00303265045", "not a valid FR VAT ID: its check digits are wrong"),
        ("DE136695977", "not a valid DE VAT ID: its check digits are wrong"),
        ("IT00743110158", "not a valid IT VAT ID: its check digits are wrong"),
        ("BE0403019262", "not a valid BE VAT ID"),
        ("AT12345678", "not a valid AT VAT ID: the number has an invalid format"),
        ("BE2123456789", "not a valid BE VAT ID"),
        ("DE12345678", "not a valid DE VAT ID: the number has an invalid length"),
        ("FR1234567890", "not a valid FR VAT ID"),
        ("NL123456789C01", "not a valid NL VAT ID"),
        ("GB1234567890", "not a valid GB VAT ID"),
        ("CHE123456789XYZ", "not a valid CH VAT ID"),
        ("GR094259216", "Greek VAT IDs start with EL"),
        ("US123456789", "must start with a country prefix"),
        ("123456789", "must start with a country prefix"),
    ],
)
def test_bad_vat_ids(given: str, fragment: str) -> None:
    error = refused({"vat_id": given})
    assert error.field == "vat_id"
    assert fragment in error.message
    assert not is_valid_vat_id(given)


def test_vat_prefix_must_match_country() -> None:
    error = refused({"country": "FR", "vat_id": "DE136695976"})
    assert error.field == "vat_id"
    assert "prefix DE does not match country FR" in error.message


@pytest.mark.parametrize(
    ("given", "country"),
    [("EL094259216", "GR"), ("DE136695976", "DE"), ("XI980780684", "GB"), ("BE0403019261", "BE")],
)
def test_vat_id_without_country_brings_its_own(given: str, country: str) -> None:
    result = validate_settings(EMPTY, {"vat_id": given})
    assert (result.country, country_of_vat_id(given)) == (country, country)


def test_country_cannot_be_cleared_under_a_vat_id() -> None:
    current = BillingSettings(country="DE", vat_id="DE136695976")
    error = refused({"country": None}, current)
    assert error.field == "country"
    assert "DE136695976" in error.message
    assert validate_settings(current, {"country": None, "vat_id": None}) == EMPTY


def test_greece_uses_el() -> None:
    error = refused({"country": "GR", "vat_id": "CY10259033P"})
    assert "starts with EL" in error.message
    current = BillingSettings(country="GR", vat_id="EL094259216")
    assert validate_settings(current, {"city": "Athens"}).vat_id == "EL094259216"


def test_changing_country_alone_rechecks_the_vat_id() -> None:
    current = BillingSettings(country="DE", vat_id="DE136695976")
    assert refused({"country": "AT"}, current).field == "vat_id"
    assert validate_settings(current, {"country": "AT", "vat_id": None}).vat_id is None


def test_unknown_field() -> None:
    error = refused({"phone_number": "+33 1 23 45 67 89"})
    assert error.field == "phone_number"
    assert "unknown setting" in error.message
    assert "billing_email" in error.message


@pytest.mark.parametrize(
    ("name", "limit", "field"),
    [
        ("legal_name", 200, "legal_name"),
        ("billing_email", 320, "billing_email"),
        ("address_line1", 200, "address_line1"),
        ("address_line2", 200, "address_line2"),
        ("postal_code", 20, "postal_code"),
        ("city", 100, "city"),
    ],
)
def test_length_limits(name: str, limit: int, field: str) -> None:
    error = refused({name: "a" * (limit + 1)})
    assert error.field == field
    assert f"at most {limit} characters" in error.message
    if name != "billing_email":
        assert getattr(validate_settings(EMPTY, {name: "a" * limit}), name) == "a" * limit


def test_text_must_be_one_line() -> None:
    assert refused({"legal_name": "Acme\nEvil"}).field == "legal_name"
    assert refused({"postal_code": "75001;"}).field == "postal_code"


def test_error_carries_field_and_message() -> None:
    error = SettingsError("vat_id", "is wrong")
    assert isinstance(error, InvalidInput)
    assert (error.field, error.message, str(error)) == ("vat_id", "is wrong", "vat_id: is wrong")
