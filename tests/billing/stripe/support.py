"""Helpers for the Stripe tests: a catalog with Stripe prices, signed events from Stripe's
own fixture shapes, and an HTTP client that answers what localstripe cannot."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import stripe

from billing import PlanLimits
from billing.catalog import BUILTIN_PLANS, Catalog
from billing.webhooks import signature_header
from core.clock import Clock
from limits import LimitEngine, create_plugin_manager
from limits.pricing import PriceTable

WEBHOOK_SECRET = "whsec_tally_test_secret"


def stripe_plans(directory: Path) -> Path:
    """The built-in catalog with `stripe_price = "plan_<id>"` on every plan."""
    text = re.sub(
        r"^\[plans\.([a-z-]+)\]\n((?:(?!\[).*\n)*?)(price_monthly = .*\n)",
        lambda m: f'[plans.{m[1]}]\n{m[2]}{m[3]}stripe_price = "plan_{m[1]}"\n',
        BUILTIN_PLANS.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    path = directory / "plans.toml"
    path.write_text(text, encoding="utf-8")
    return path


def engine_of(catalog: Catalog, clock: Clock) -> LimitEngine:
    """A limit engine on `catalog`, as the runtime builds it, for a provider made before the
    runtime (the runtime's own engine is built from the same catalog)."""
    manager = create_plugin_manager([(PlanLimits(catalog), "billing")])
    return LimitEngine(manager, clock, PriceTable.load(None), timedelta(seconds=3600))


def subscription_object(customer: str, status: str = "active", **fields: Any) -> dict[str, Any]:
    """A subscription shaped as in Stripe's fixtures3.json (the fields Tally reads)."""
    return {
        "id": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "created": 1234567890,
        "currency": "eur",
        "items": {"object": "list", "data": [
            {"id": "si_QXhVnC2h0Jczwc", "object": "subscription_item", "quantity": 1,
             "price": {"id": "plan_ecommerce-enterprise", "object": "price"}}]},
        "latest_invoice": None,
        "metadata": {},
        **fields,
    }  # fmt: skip


def invoice_object(customer: str, status: str = "draft", **fields: Any) -> dict[str, Any]:
    """An invoice shaped as in Stripe's fixtures3.json (the fields Tally reads)."""
    return {
        "id": "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
        "object": "invoice",
        "customer": customer,
        "status": status,
        "number": None,
        "currency": "eur",
        "subtotal": 160209,
        "total": 192251,
        "amount_due": 192251,
        "amount_paid": 0,
        "created": 1773576000,
        "period_start": 1773576000,
        "period_end": 1774915200,
        "invoice_pdf": None,
        "hosted_invoice_url": None,
        "billing_reason": "subscription_update",
        **fields,
    }


def signed_event(
    event_id: str, event_type: str, obj: Mapping[str, Any], created: int, at: int
) -> tuple[bytes, dict[str, str]]:
    """An event as Stripe posts it, with a `Stripe-Signature` made at `at`."""
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()
    return payload, {"Stripe-Signature": signature_header(payload, WEBHOOK_SECRET, at)}


Responder = Callable[[str, str, Mapping[str, list[str]]], tuple[int, Mapping[str, Any]]]


class RecordingClient(stripe.HTTPClient):
    """Answers the SDK's requests with `responder` (method, path, form) and records them:
    for the calls localstripe cannot serve (proration_behavior, billing_portal.Session)."""

    name = "recording"

    def __init__(self, responder: Responder) -> None:
        super().__init__()
        self.responder = responder
        self.requests: list[tuple[str, str, dict[str, list[str]], Mapping[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        body = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
        form = parse_qs(body, keep_blank_values=True)
        self.requests.append((method.upper(), "/" + path, form, dict(headers or {})))
        status, body = self.responder(method.upper(), "/" + path, form)
        return json.dumps(body), status, {"request-id": "req_test"}

    def close(self) -> None:
        return None
