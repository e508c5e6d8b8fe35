"""Validation and normalization of an organization's billing settings."""

from __future__ import annotations

import pytest

from billing.settings import (
    COUNTRY_CODES,
    BillingSettings,
    SettingsError,
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
            "vat_id": "fr 12-345.678.901",
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
        vat_id="FR12345678901",
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


def test_country_list_is_complete() -> None:
    assert len(COUNTRY_CODES) == 249
    assert {"FR", "DE", "GR", "GB", "CH", "US", "AX", "BQ", "SS", "SX", "CW"} <= COUNTRY_CODES
    assert not {"EL", "UK", "EU", "XK", "AN"} & COUNTRY_CODES


@pytest.mark.parametrize(
    ("country", "given", "expected"),
    [
        ("AT", "ATU12345678", "ATU12345678"),
        ("BE", "BE 0123.456.789", "BE0123456789"),
        ("DE", "de123456789", "DE123456789"),
        ("FR", "FR 12 345678901", "FR12345678901"),
        ("FR", "FRXA345678901", "FRXA345678901"),
        ("IT", "IT12345678901", "IT12345678901"),
        ("ES", "ESX1234567Z", "ESX1234567Z"),
        ("ES", "ES-B12345678", "ESB12345678"),
        ("NL", "NL123456789B01", "NL123456789B01"),
        ("IE", "IE1234567T", "IE1234567T"),
        ("IE", "IE1234567WA", "IE1234567WA"),
        ("PL", "PL1234567890", "PL1234567890"),
        ("SE", "SE123456789001", "SE123456789001"),
        ("GR", "EL123456789", "EL123456789"),
        ("GB", "GB123456789", "GB123456789"),
        ("GB", "GB123456789012", "GB123456789012"),
        ("CH", "CHE-123.456.789 MWST", "CHE123456789MWST"),
        ("CH", "CHE123456789", "CHE123456789"),
        (None, "LU12345678", "LU12345678"),
    ],
)
def test_good_vat_ids(country: str | None, given: str, expected: str) -> None:
    result = validate_settings(EMPTY, {"country": country, "vat_id": given})
    assert result.vat_id == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("AT12345678", "expected AT and U and 8 digits"),
        ("BE2123456789", "not a valid BE VAT ID"),
        ("DE12345678", "expected DE and 9 digits"),
        ("FR1234567890", "not a valid FR VAT ID"),
        ("IT1234567890", "not a valid IT VAT ID"),
        ("NL123456789C01", "not a valid NL VAT ID"),
        ("GB1234567890", "not a valid GB VAT ID"),
        ("CHE123456789XYZ", "not a valid CH VAT ID"),
        ("GR123456789", "Greek VAT IDs start with EL"),
        ("US123456789", "must start with a country prefix"),
        ("123456789", "must start with a country prefix"),
    ],
)
def test_bad_vat_ids(given: str, fragment: str) -> None:
    error = refused({"vat_id": given})
    assert error.field == "vat_id"
    assert fragment in error.message


def test_vat_prefix_must_match_country() -> None:
    error = refused({"country": "FR", "vat_id": "DE123456789"})
    assert error.field == "vat_id"
    assert "prefix DE does not match country FR" in error.message


def test_greece_uses_el() -> None:
    error = refused({"country": "GR", "vat_id": "CY12345678X"})
    assert "starts with EL" in error.message
    current = BillingSettings(country="GR", vat_id="EL123456789")
    assert validate_settings(current, {"city": "Athens"}).vat_id == "EL123456789"


def test_changing_country_alone_rechecks_the_vat_id() -> None:
    current = BillingSettings(country="DE", vat_id="DE123456789")
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
