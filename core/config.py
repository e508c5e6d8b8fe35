"""Settings read from the environment, once, at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./tally.db"
_PREFIX = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


class ConfigError(ValueError):
    """A setting from the environment is missing or malformed."""


@dataclass(frozen=True)
class Rate:
    """A token bucket's rate: `per_second` requests on average, `burst` at once."""

    per_second: float
    burst: int


DEFAULT_KEY_RATE = Rate(5_000, 10_000)
DEFAULT_ORGANIZATION_RATE = Rate(10_000, 20_000)
DEFAULT_ORGANIZATION_CONCURRENCY = 32
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DEFAULT_EVENT_RETENTION_DAYS = 400
DEFAULT_AUTH_CACHE_SECONDS = 2.0
MAX_AUTH_CACHE_SECONDS = 60.0
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Settings:
    """Everything Tally reads from its environment."""

    database_url: str = DEFAULT_DATABASE_URL
    plans_path: Path | None = None
    billing: str = "local"
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    model_prices_path: Path | None = None
    usage_grace_seconds: int = 3600
    seller_name: str | None = None
    seller_address: tuple[str, ...] = ()
    seller_country: str = "FR"
    seller_vat_id: str | None = None
    seller_email: str | None = None
    seller_legal_form: str | None = None
    seller_registration: str | None = None
    tax_rates_path: Path | None = None
    secret_key: str | None = None
    invoice_prefix: str = "TAL"
    payment_terms_days: int = 30
    dunning_grace_days: int = 7
    demo: bool = False
    key_rate: Rate | None = DEFAULT_KEY_RATE
    organization_rate: Rate | None = DEFAULT_ORGANIZATION_RATE
    organization_concurrency: int = DEFAULT_ORGANIZATION_CONCURRENCY
    public_url: str = DEFAULT_PUBLIC_URL
    graphiql: bool = True
    cors_origins: tuple[str, ...] = ()
    auth_cache_seconds: float = DEFAULT_AUTH_CACHE_SECONDS
    event_retention_days: int = DEFAULT_EVENT_RETENTION_DAYS

    def missing_seller_identity(self) -> list[str]:
        """The variables of the seller's identity an invoice needs that are not set."""
        wanted = {
            "TALLY_SELLER_NAME": self.seller_name,
            "TALLY_SELLER_ADDRESS": self.seller_address,
            "TALLY_SELLER_VAT_ID": self.seller_vat_id,
            "TALLY_SELLER_REGISTRATION": self.seller_registration,
        }
        return [name for name, value in wanted.items() if not value]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        billing = env.get("TALLY_BILLING", "local")
        if billing not in ("local", "stripe"):
            raise ConfigError(f"TALLY_BILLING must be 'local' or 'stripe', not {billing!r}")
        plans = env.get("TALLY_PLANS")
        prices = env.get("TALLY_MODEL_PRICES")
        grace = env.get("TALLY_USAGE_GRACE_SECONDS", "3600")
        if not grace.isdigit():
            raise ConfigError(f"TALLY_USAGE_GRACE_SECONDS must be whole seconds, not {grace!r}")
        tax_rates = env.get("TALLY_TAX_RATES")
        secret_key = env.get("TALLY_SECRET_KEY") or None
        if secret_key is not None and len(secret_key) < 32:
            raise ConfigError("TALLY_SECRET_KEY must be at least 32 characters")
        country = env.get("TALLY_SELLER_COUNTRY", "FR").strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise ConfigError(
                f"TALLY_SELLER_COUNTRY must be a country code like FR, not {country!r}"
            )
        address = env.get("TALLY_SELLER_ADDRESS", "")
        prefix = env.get("TALLY_INVOICE_PREFIX", "TAL").strip()
        if not _PREFIX.fullmatch(prefix) or len(prefix) > 20:
            raise ConfigError(
                "TALLY_INVOICE_PREFIX must be letters, digits and single dashes (at most 20 "
                f"characters), like TAL or ACME-EU, not {prefix!r}"
            )
        database_url = env.get("TALLY_DATABASE_URL", DEFAULT_DATABASE_URL)
        return cls(
            database_url=database_url,
            plans_path=Path(plans) if plans else None,
            billing=billing,
            stripe_api_key=env.get("STRIPE_API_KEY"),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=env.get("TALLY_STRIPE_API_BASE"),
            model_prices_path=Path(prices) if prices else None,
            usage_grace_seconds=int(grace),
            seller_name=env.get("TALLY_SELLER_NAME", "").strip() or None,
            seller_address=tuple(line.strip() for line in address.split(";") if line.strip()),
            seller_country=country,
            seller_vat_id=env.get("TALLY_SELLER_VAT_ID") or None,
            seller_email=env.get("TALLY_SELLER_EMAIL") or None,
            seller_legal_form=env.get("TALLY_SELLER_LEGAL_FORM", "").strip() or None,
            seller_registration=env.get("TALLY_SELLER_REGISTRATION", "").strip() or None,
            tax_rates_path=Path(tax_rates) if tax_rates else None,
            secret_key=secret_key,
            invoice_prefix=prefix,
            payment_terms_days=_days(env, "TALLY_PAYMENT_TERMS_DAYS", 30),
            dunning_grace_days=_days(env, "TALLY_DUNNING_GRACE_DAYS", 7),
            demo=env.get("TALLY_DEMO") == "1" or database_url == DEFAULT_DATABASE_URL,
            key_rate=_rate(env, "TALLY_RATE_LIMIT_KEY", DEFAULT_KEY_RATE),
            organization_rate=_rate(env, "TALLY_RATE_LIMIT_ORG", DEFAULT_ORGANIZATION_RATE),
            organization_concurrency=_concurrency(env),
            public_url=_public_url(env),
            graphiql=_switch(env, "TALLY_GRAPHIQL", True),
            cors_origins=_origins(env),
            auth_cache_seconds=_auth_cache_seconds(env),
            event_retention_days=_retention_days(env),
        )


def _public_url(env: Mapping[str, str]) -> str:
    """TALLY_PUBLIC_URL: the address clients reach Tally at, for the links it hands out."""
    value = env.get("TALLY_PUBLIC_URL", "").strip().rstrip("/")
    if not value:
        return DEFAULT_PUBLIC_URL
    scheme, _, rest = value.partition("://")
    if scheme not in ("http", "https") or not rest or any(c in rest for c in "?#@ "):
        raise ConfigError(
            f"TALLY_PUBLIC_URL must be an http(s) address like https://tally.example.com, "
            f"not {value!r}"
        )
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("0", "1", "true", "false", "on", "off"):
        raise ConfigError(f"{name} must be 1 or 0, not {value!r}")
    return value in ("1", "true", "on")


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """TALLY_CORS_ORIGINS: comma-separated origins (scheme://host[:port]) allowed to call the
    API from a browser, or `*` for any; none by default."""
    value = env.get("TALLY_CORS_ORIGINS", "").strip()
    origins = tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                "TALLY_CORS_ORIGINS must be comma-separated origins like "
                f"https://app.example.com,http://localhost:3000 (or *), not {origin!r}"
            )
    return origins


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate | None:
    """`RATE,BURST` (requests per second, at once), `RATE` (burst twice the rate), or `off`."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if value.lower() == "off":
        return None
    rate, _, burst = value.partition(",")
    try:
        per_second = float(rate)
        at_once = int(burst) if burst.strip() else max(1, int(per_second * 2))
    except ValueError:
        per_second, at_once = 0, 0
    if not per_second > 0 or at_once < 1:
        raise ConfigError(
            f"{name} must be RATE,BURST (requests per second, and at once) like 100,200, or "
            f"off, not {value!r}"
        )
    return Rate(per_second, at_once)


def _auth_cache_seconds(env: Mapping[str, str]) -> float:
    """TALLY_AUTH_CACHE_SECONDS: how long a process trusts an API key it read (0: never)."""
    name = "TALLY_AUTH_CACHE_SECONDS"
    value = env.get(name, "").strip()
    if not value:
        return DEFAULT_AUTH_CACHE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_AUTH_CACHE_SECONDS:
        raise ConfigError(
            f"{name} must be seconds from 0 (no cache) to {MAX_AUTH_CACHE_SECONDS:g}, like 2 or "
            f"0.5, not {value!r}"
        )
    return seconds


def _concurrency(env: Mapping[str, str]) -> int:
    name = "TALLY_ORG_CONCURRENCY"
    value = env.get(name, str(DEFAULT_ORGANIZATION_CONCURRENCY)).strip()
    if not value.isdigit() or not 1 <= int(value) <= 10_000:
        raise ConfigError(f"{name} must be a whole number from 1 to 10000, not {value!r}")
    return int(value)


def _retention_days(env: Mapping[str, str]) -> int:
    """TALLY_EVENT_RETENTION_DAYS: how long raw usage events (and so their idempotency keys)
    are kept at least; counters, rollups and invoices are kept whatever it says."""
    name = "TALLY_EVENT_RETENTION_DAYS"
    days = _days(env, name, DEFAULT_EVENT_RETENTION_DAYS)
    if days < 1:
        raise ConfigError(f"{name} must be at least 1 day (idempotency keys live as long)")
    return days


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default)).strip()
    if not value.isdigit() or int(value) > 3650:
        raise ConfigError(f"{name} must be a whole number of days (0 to 3650), not {value!r}")
    return int(value)
