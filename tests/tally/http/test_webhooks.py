"""POST /webhooks/stripe: signatures, each event once, out-of-order deliveries, the handlers.

Payloads carry the fields of Stripe's own fixtures (openapi fixtures3.json: `subscription`,
`invoice`, `event`), signed with Stripe's scheme; localstripe never sends
customer.subscription.updated or invoice.paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from billing import repository
from billing.models import ProviderEvent
from core.config import Settings
from tally.runtime import Runtime
from tests.billing.stripe.support import (
    WEBHOOK_SECRET,
    invoice_object,
    signed_event,
    subscription_object,
)
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

NOW = 1773576000


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, stripe_webhook_secret=WEBHOOK_SECRET)


async def customer_of(runtime: Runtime, open_org: OpenOrg) -> tuple[str, str, str]:
    account = await open_org()
    customer = f"cus_{account.organization.id[:14]}"
    async with runtime.db.write() as session:
        subscription = await repository.get_subscription(session, account.organization.id)
        assert subscription is not None
        subscription.customer_ref = customer
        subscription.provider = "stripe"
        await repository.add(session, subscription)
    return account.organization.id, customer, account.owner_api_key


async def deliver(
    client: httpx.AsyncClient, event_id: str, kind: str, obj: Mapping[str, Any], created: int
) -> httpx.Response:
    payload, headers = signed_event(event_id, kind, obj, created, NOW)
    return await client.post("/webhooks/stripe", content=payload, headers=headers)


async def events(runtime: Runtime) -> int:
    async with runtime.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ProviderEvent)) or 0)


async def test_a_bad_signature_gets_400_and_writes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    _, customer, _ = await customer_of(runtime, open_org)
    before = await events(runtime)
    obj = subscription_object(customer, metadata={"tally_plan": "scale"})
    payload, headers = signed_event("evt_bad", "customer.subscription.updated", obj, NOW, NOW)
    tampered = payload.replace(b"scale", b"growth")
    old = signed_event("evt_old", "customer.subscription.updated", obj, NOW, NOW - 301)
    for body, header in (
        (tampered, headers),
        (payload, {}),
        (payload, {"Stripe-Signature": "t=1,v1=zz"}),
        (payload, {"Stripe-Signature": "garbage"}),
        old,
    ):
        response = await client.post("/webhooks/stripe", content=body, headers=header)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert await events(runtime) == before
    page = await graphql(client, None, "{ plans { id } }")
    assert page["errors"]


async def test_each_event_is_handled_once(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    organization_id, customer, _ = await customer_of(runtime, open_org)
    obj = subscription_object(customer, metadata={"tally_plan": "scale"})
    event_id = f"evt_once_{organization_id[:8]}"
    first = await deliver(client, event_id, "customer.subscription.created", obj, NOW)
    again = await deliver(client, event_id, "customer.subscription.created", obj, NOW)
    assert first.json()["outcome"] == "applied"
    assert again.json()["outcome"] == "duplicate"


async def test_out_of_order_subscription_events_settle_on_the_latest_state(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    organization_id, customer, key = await customer_of(runtime, open_org)
    tag = organization_id[:8]
    newer = subscription_object(
        customer, metadata={"tally_plan": "scale", "tally_pending_plan": "growth"}
    )
    older = subscription_object(customer, status="incomplete", metadata={"tally_plan": "starter"})
    updated = await deliver(
        client, f"evt_u_{tag}", "customer.subscription.updated", newer, NOW + 10
    )
    created = await deliver(client, f"evt_c_{tag}", "customer.subscription.created", older, NOW)
    assert (updated.json()["outcome"], created.json()["outcome"]) == ("applied", "stale")
    query = "{ organization { plan { id } subscription { status pendingPlan { id } } } }"
    page = await graphql(client, key, query)
    assert page["data"]["organization"] == {
        "plan": {"id": "scale"},
        "subscription": {"status": "ACTIVE", "pendingPlan": {"id": "growth"}},
    }
    deleted = await deliver(
        client, f"evt_d_{tag}", "customer.subscription.deleted", newer, NOW + 20
    )
    assert deleted.json()["outcome"] == "applied"
    page = await graphql(client, key, query)
    assert page["data"]["organization"]["subscription"]["status"] == "CANCELED"


async def test_invoices_are_mirrored_and_a_late_older_event_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    organization_id, customer, key = await customer_of(runtime, open_org)
    tag = organization_id[:8]
    finalized = invoice_object(
        customer,
        status="open",
        number="467CD393-0357",
        invoice_pdf="https://pay.stripe.com/invoice/acct_1/test_1/pdf",
        hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_1",
    )
    deliveries = [
        (f"evt_f_{tag}", "invoice.finalized", finalized, NOW + 5),
        (f"evt_n_{tag}", "invoice.created", invoice_object(customer), NOW),
        (f"evt_p_{tag}", "invoice.paid", {**finalized, "status": "paid"}, NOW + 9),
        (f"evt_x_{tag}", "invoice.payment_failed", finalized, NOW + 9),
    ]
    outcomes = [(await deliver(client, *delivery)).json()["outcome"] for delivery in deliveries]
    assert outcomes == ["applied", "stale", "applied", "stale"]
    query = """{ organization { invoices {
      nodes { number amount { formatted } status pdfUrl hostedUrl } } } }"""
    page = await graphql(client, key, query)
    assert page["data"]["organization"]["invoices"]["nodes"] == [
        {
            "number": "467CD393-0357",
            "amount": {"formatted": "€1,922.51"},
            "status": "paid",
            "pdfUrl": "https://pay.stripe.com/invoice/acct_1/test_1/pdf",
            "hostedUrl": "https://invoice.stripe.com/i/acct_1/test_1",
        }
    ]


async def test_unknown_customers_and_other_event_types_are_acknowledged(
    client: httpx.AsyncClient,
) -> None:
    unknown = await deliver(
        client, "evt_unknown", "invoice.paid", invoice_object("cus_nobody"), NOW
    )
    other = await deliver(client, "evt_other", "plan.created", {"id": "plan_x"}, NOW)
    assert (unknown.status_code, unknown.json()["outcome"]) == (200, "unknown_customer")
    assert (other.status_code, other.json()["outcome"]) == (200, "ignored")
