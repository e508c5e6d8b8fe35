"""Settings read from the environment, once, at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./tally.db"


class ConfigError(ValueError):
    """A setting from the environment is missing or malformed."""


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
        return cls(
            database_url=env.get("TALLY_DATABASE_URL", DEFAULT_DATABASE_URL),
            plans_path=Path(plans) if plans else None,
            billing=billing,
            stripe_api_key=env.get("STRIPE_API_KEY"),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=env.get("TALLY_STRIPE_API_BASE"),
            model_prices_path=Path(prices) if prices else None,
            usage_grace_seconds=int(grace),
        )
