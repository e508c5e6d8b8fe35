"""Stripe's events drive dunning, and two events of the same second are ordered by
re-reading the object from Stripe (the strict fake), through POST /webhooks/stripe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing import repository
from core.clock import FrozenClock
from core.orgs import Organization
from tally.runtime import Runtime
from tests.billing.stripe.fake import StrictStripe
from tests.billing.stripe.support import (
    WEBHOOK_SECRET,
    invoice_object,
    signed_event,
    stripe_plans,
    subscription_object,
)
from tests.billing.stripe.test_lifecycle import client_for, runtime_on

pytestmark = pytest.mark.anyio

NOW = 1773576000


@pytest.fixture
def plans_path(tmp_path: Path) -> Path:
    return stripe_plans(tmp_path)


@pytest.fixture
async def runtime(
    database_url: str, plans_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Runtime, StrictStripe]]:
    fake = StrictStripe()
    runtime = runtime_on(
        database_url, plans_path, clock, fake,
        stripe_webhook_secret=WEBHOOK_SECRET, dunning_grace_days=3,
    )  # fmt: skip
    yield runtime, fake
    await runtime.db.dispose()


async def deliver(
    client: httpx.AsyncClient, event_id: str, kind: str, obj: Mapping[str, Any], created: int
) -> str:
    payload, headers = signed_event(event_id, kind, obj, created, NOW)
    response = await client.post("/webhooks/stripe", content=payload, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


async def state(runtime: Runtime, organization_id: str) -> tuple[str, Any, Any]:
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
        organization = await session.get(Organization, organization_id)
    assert subscription is not None and organization is not None
    return subscription.status, subscription.past_due_since, organization.usage_suspended_from


async def test_a_failed_payment_starts_the_grace_and_a_paid_invoice_ends_it(
    runtime: tuple[Runtime, StrictStripe], clock: FrozenClock
) -> None:
    tally, fake = runtime
    opened = await tally.accounts.open(name="Dun", plan_id="growth", owner_email="o@dun.example")
    organization_id = opened.account.organization.id
    failed = invoice_object(fake.id("cus", 1), status="open", id=f"in_{organization_id[:10]}")
    async with client_for(tally) as client:
        tag = organization_id[:8]
        assert await deliver(client, f"evt_f_{tag}", "invoice.payment_failed", failed, NOW) == (
            "applied"
        )
        status, since, stops = await state(tally, organization_id)
        assert (status, since, stops) == ("past_due", clock.now(), clock.now() + timedelta(days=3))
        paid = {**failed, "status": "paid"}
        assert await deliver(client, f"evt_p_{tag}", "invoice.paid", paid, NOW + 60) == "applied"
    assert await state(tally, organization_id) == ("active", None, None)


async def test_two_events_of_the_same_second_settle_on_stripes_current_state(
    runtime: tuple[Runtime, StrictStripe],
) -> None:
    tally, fake = runtime
    opened = await tally.accounts.open(name="Same", plan_id="growth", owner_email="o@s.example")
    organization_id = opened.account.organization.id
    tag = organization_id[:8]
    updated = subscription_object(fake.id("cus", 1), id=fake.id("sub", 2), status="active")
    stale = {**updated, "status": "past_due"}
    async with client_for(tally) as client:
        assert await deliver(client, f"evt_a_{tag}", "customer.subscription.updated", updated, NOW)
        rereads_before = [
            r
            for r in fake.client.requests
            if r[:2] == ("GET", f"/v1/subscriptions/{fake.id('sub', 2)}")
        ]
        assert rereads_before == []
        await deliver(client, f"evt_b_{tag}", "customer.subscription.updated", stale, NOW)
    rereads = [
        r
        for r in fake.client.requests
        if r[:2] == ("GET", f"/v1/subscriptions/{fake.id('sub', 2)}")
    ]
    assert len(rereads) == 1, "the second event of the same second was re-read from Stripe"
    status, _, _ = await state(tally, organization_id)
    assert status == "active", "Stripe's current state, not the delivered one"
