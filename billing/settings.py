"""An organization's billing settings: who is billed, where, and under which VAT ID."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from babel import Locale
from babel.core import get_global
from stdnum.ch import vat as ch_vat
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.no import mva as no_vat

from core.errors import ErrorCode, InvalidInput


def _babel_country_codes() -> frozenset[str]:
    """Babel's (CLDR's) two-letter territories that are places people live in: groupings
    such as EU or UN and the unknown region ZZ have no languages there."""
    languages = get_global("territory_languages")
    return frozenset(
        code
        for code in Locale("en").territories
        if isinstance(code, str) and len(code) == 2 and code.isalpha() and languages.get(code)
    )


COUNTRY_CODES: frozenset[str] = _babel_country_codes()
"""The two-letter country codes Babel knows (ISO 3166-1 alpha-2 and a few CLDR additions
such as XK, Kosovo, and IC, the Canary Islands)."""

_COUNTRY_OF_VAT_PREFIX = {"EL": "GR", "XI": "GB"}
_VAT_PREFIX_OF_COUNTRY = {"GR": "EL"}
_EU_VAT_PREFIXES = frozenset(
    _VAT_PREFIX_OF_COUNTRY.get(code.upper(), code.upper()) for code in eu_vat.MEMBER_STATES
)
_OTHER_VAT_PREFIXES = ("CH", "GB", "NO")
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
    A VAT ID given without a country brings its own (EL: GR); clearing the country while
    keeping a VAT ID is refused.
    """
    updates: dict[str, str | None] = {}
    for name, value in changes.items():
        if name not in SETTINGS_FIELDS:
            known = ", ".join(SETTINGS_FIELDS)
            raise SettingsError(name, f"unknown setting; settings are {known}")
        updates[name] = _clean(name, value)
    result = replace(current, **updates)
    if not ("vat_id" in updates or "country" in updates) or not result.vat_id:
        return result
    if result.country is None:
        if "vat_id" not in updates:
            raise SettingsError(
                "country",
                f"is needed while the VAT ID {result.vat_id} is set; clear the VAT ID first",
            )
        return replace(result, country=country_of_vat_id(result.vat_id))
    _check_vat_country(result.vat_id, result.country)
    return result


def normalize_vat_id(value: str) -> str:
    """Uppercase, without spaces, dots or dashes: 'fr 40-303.265.045' -> 'FR40303265045'."""
    return _VAT_SEPARATORS.sub("", value).upper()


def vat_prefix(country: str) -> str:
    """The VAT ID prefix of a country: its ISO code, except EL for Greece."""
    return _VAT_PREFIX_OF_COUNTRY.get(country, country)


def country_of_vat_id(vat_id: str) -> str:
    """The country a VAT ID belongs to, from its prefix: 'EL...' -> 'GR', 'XI...' -> 'GB'."""
    prefix = normalize_vat_id(vat_id)[:2]
    return _COUNTRY_OF_VAT_PREFIX.get(prefix, prefix)


def is_valid_vat_id(vat_id: str) -> bool:
    """True when python-stdnum accepts the VAT ID's format and check digits for its country."""
    try:
        _check_vat_id(vat_id)
    except SettingsError:
        return False
    return True


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
            "country", f"{text!r} is not a two-letter country code (ISO 3166-1) such as FR or DE"
        )
    return code


def _check_vat_id(text: str) -> str:
    """The VAT ID in its compact form, checked by python-stdnum (format and check digits)."""
    vat_id = normalize_vat_id(text)
    prefix = vat_id[:2]
    if prefix == "GR":
        raise SettingsError("vat_id", f"{text!r}: Greek VAT IDs start with EL, not GR")
    try:
        if prefix in _EU_VAT_PREFIXES:
            return str(eu_vat.validate(vat_id))
        if prefix == "GB":
            return "GB" + str(gb_vat.validate(vat_id))
        if prefix == "CH":
            return str(ch_vat.validate(vat_id))
        if prefix == "NO":
            return "NO" + str(no_vat.validate(vat_id[2:]))
    except InvalidChecksum:
        raise SettingsError(
            "vat_id", f"{text!r} is not a valid {prefix} VAT ID: its check digits are wrong"
        ) from None
    except ValidationError as error:
        reason = str(error).rstrip(".").lower()
        raise SettingsError(
            "vat_id", f"{text!r} is not a valid {prefix} VAT ID: {reason}"
        ) from None
    supported = ", ".join(sorted(_EU_VAT_PREFIXES | set(_OTHER_VAT_PREFIXES)))
    raise SettingsError(
        "vat_id", f"{text!r} must start with a country prefix; supported: {supported}"
    )


def _check_vat_country(vat_id: str, country: str) -> None:
    expected = vat_prefix(country)
    if country_of_vat_id(vat_id) != country:
        raise SettingsError(
            "vat_id",
            f"VAT ID prefix {vat_id[:2]} does not match country {country}; "
            f"a VAT ID for {country} starts with {expected}",
        )
