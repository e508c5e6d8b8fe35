"""An organization's billing settings: who is billed, where, and under which VAT ID."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from core.errors import ErrorCode, InvalidInput

# fmt: off
COUNTRY_CODES: frozenset[str] = frozenset({
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
})
"""The officially assigned ISO 3166-1 alpha-2 country codes."""
# fmt: on

VAT_ID_FORMATS: Mapping[str, tuple[str, str]] = {
    "AT": (r"U\d{8}", "U and 8 digits"),
    "BE": (r"[01]\d{9}", "0 or 1 and 9 digits"),
    "BG": (r"\d{9,10}", "9 or 10 digits"),
    "CY": (r"\d{8}[A-Z]", "8 digits and a letter"),
    "CZ": (r"\d{8,10}", "8 to 10 digits"),
    "DE": (r"\d{9}", "9 digits"),
    "DK": (r"\d{8}", "8 digits"),
    "EE": (r"\d{9}", "9 digits"),
    "EL": (r"\d{9}", "9 digits"),
    "ES": (
        r"[A-Z0-9]\d{7}[A-Z0-9]",
        "9 characters: a letter or digit, 7 digits, a letter or digit",
    ),
    "FI": (r"\d{8}", "8 digits"),
    "FR": (r"[A-Z0-9]{2}\d{9}", "2 letters or digits and 9 digits"),
    "HR": (r"\d{11}", "11 digits"),
    "HU": (r"\d{8}", "8 digits"),
    "IE": (r"\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W]", "8 or 9 characters such as 1234567T"),
    "IT": (r"\d{11}", "11 digits"),
    "LT": (r"\d{9}|\d{12}", "9 or 12 digits"),
    "LU": (r"\d{8}", "8 digits"),
    "LV": (r"\d{11}", "11 digits"),
    "MT": (r"\d{8}", "8 digits"),
    "NL": (r"\d{9}B\d{2}", "9 digits, B and 2 digits"),
    "PL": (r"\d{10}", "10 digits"),
    "PT": (r"\d{9}", "9 digits"),
    "RO": (r"\d{2,10}", "2 to 10 digits"),
    "SE": (r"\d{12}", "12 digits"),
    "SI": (r"\d{8}", "8 digits"),
    "SK": (r"\d{10}", "10 digits"),
    "GB": (r"\d{9}|\d{12}", "9 or 12 digits"),
    "CH": (r"E\d{9}(?:MWST|TVA|IVA)?", "E, 9 digits and optionally MWST, TVA or IVA"),
}
"""Per VAT ID prefix: the shape of what follows the prefix, and that shape in words."""

_VAT_ID_PATTERNS = {prefix: re.compile(shape) for prefix, (shape, _) in VAT_ID_FORMATS.items()}
_VAT_PREFIX_OF_COUNTRY = {"GR": "EL"}
_VAT_SEPARATORS = re.compile(r"[\s.\-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_POSTAL_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")
_MAX_LENGTHS = {
    "legal_name": 200,
    "billing_email": 320,
    "address_line1": 200,
    "address_line2": 200,
    "postal_code": 20,
    "city": 100,
}


class SettingsError(InvalidInput):
    """A billing setting was refused; `field` is its name (snake_case)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message, field=field)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class BillingSettings:
    """What an invoice needs to know about the organization it bills."""

    legal_name: str | None = None
    billing_email: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None
    vat_id: str | None = None


SETTINGS_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(BillingSettings))


def validate_settings(
    current: BillingSettings, changes: Mapping[str, str | None]
) -> BillingSettings:
    """The settings after `changes` (snake_case names; None or blank clears a field).

    Only the changed fields are checked, so a rule tightened later never blocks an
    unrelated edit; the VAT ID prefix is checked against the country whenever either changes.
    """
    updates: dict[str, str | None] = {}
    for name, value in changes.items():
        if name not in SETTINGS_FIELDS:
            known = ", ".join(SETTINGS_FIELDS)
            raise SettingsError(name, f"unknown setting; settings are {known}")
        updates[name] = _clean(name, value)
    result = replace(current, **updates)
    if ("vat_id" in updates or "country" in updates) and result.vat_id and result.country:
        _check_vat_country(result.vat_id, result.country)
    return result


def normalize_vat_id(value: str) -> str:
    """Uppercase, without spaces, dots or dashes: 'fr 12-345.678.901' -> 'FR12345678901'."""
    return _VAT_SEPARATORS.sub("", value).upper()


def vat_prefix(country: str) -> str:
    """The VAT ID prefix of a country: its ISO code, except EL for Greece."""
    return _VAT_PREFIX_OF_COUNTRY.get(country, country)


def _clean(name: str, value: object) -> str | None:
    field = name
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(field, "must be a string or null")
    text = value.strip()
    if not text:
        return None
    if _CONTROL.search(text):
        raise SettingsError(field, "must be a single line of text")
    limit = _MAX_LENGTHS.get(name)
    if limit is not None and len(text) > limit:
        raise SettingsError(field, f"must be at most {limit} characters, not {len(text)}")
    if name == "billing_email":
        return _check_email(text)
    if name == "postal_code" and not _POSTAL_CODE.fullmatch(text):
        raise SettingsError(field, "may hold only letters, digits, spaces and dashes")
    if name == "country":
        return _check_country(text)
    if name == "vat_id":
        return _check_vat_id(text)
    return text


def _check_email(text: str) -> str:
    match = _EMAIL.fullmatch(text)
    if match is None or len(match["local"]) > 64:
        raise SettingsError(
            "billing_email", f"{text!r} is not an email address like name@example.com"
        )
    return text


def _check_country(text: str) -> str:
    code = text.upper()
    if code not in COUNTRY_CODES:
        raise SettingsError(
            "country", f"{text!r} is not an ISO 3166-1 alpha-2 code such as FR or DE"
        )
    return code


def _check_vat_id(text: str) -> str:
    vat_id = normalize_vat_id(text)
    prefix, rest = vat_id[:2], vat_id[2:]
    pattern = _VAT_ID_PATTERNS.get(prefix)
    if pattern is None and prefix == "GR":
        raise SettingsError("vat_id", f"{text!r}: Greek VAT IDs start with EL, not GR")
    if pattern is None:
        supported = ", ".join(sorted(VAT_ID_FORMATS))
        raise SettingsError(
            "vat_id", f"{text!r} must start with a country prefix; supported: {supported}"
        )
    if not pattern.fullmatch(rest):
        description = VAT_ID_FORMATS[prefix][1]
        raise SettingsError(
            "vat_id",
            f"{text!r} is not a valid {prefix} VAT ID: expected {prefix} and {description}",
        )
    return vat_id


def _check_vat_country(vat_id: str, country: str) -> None:
    expected = vat_prefix(country)
    if vat_id[:2] != expected:
        raise SettingsError(
            "vat_id",
            f"VAT ID prefix {vat_id[:2]} does not match country {country}; "
            f"a VAT ID for {country} starts with {expected}",
        )
