"""Suspended usage: once `usage_suspended_from` has come, metered usage is refused with
SUBSCRIPTION_INACTIVE before anything is written, on every API; gauges keep working."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from core.orgs import Organization
from limits import UsageInput
from limits.types import UsageSuspended
from tally.runtime import Runtime
from tests.limits.conftest import consume, open_tiny, used
from tests.support import graphql

pytestmark = pytest.mark.anyio

CONSUME = """
mutation($resource: String!, $amount: BigInt!, $key: String!) {
  consumeUsage(resource: $resource, amount: $amount, idempotencyKey: $key) {
    __typename
    ... on UsageDecision { status used }
    ... on SubscriptionInactiveError { code message resource suspendedFrom }
  }
}
"""


async def suspend(runtime: Runtime, account: OpenedAccount, at: datetime) -> None:
    async with runtime.db.write() as session:
        row = await session.get(Organization, account.organization.id)
        assert row is not None
        row.usage_suspended_from = at
    account.organization.usage_suspended_from = at


async def test_metered_usage_is_refused_once_suspension_starts(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    await suspend(runtime, account, clock.now() + timedelta(days=1))
    assert (await consume(runtime, account, "tokens", 5, "before")).status == "accepted"
    clock.advance(timedelta(days=1))
    with pytest.raises(UsageSuspended) as caught:
        await consume(runtime, account, "tokens", 5, "after")
    assert caught.value.code == "SUBSCRIPTION_INACTIVE"
    with pytest.raises(UsageSuspended):
        async with runtime.db.read() as session:
            await runtime.engine.check(
                session, account.organization, [UsageInput("tokens", 1, "c")]
            )
    with pytest.raises(UsageSuspended):
        async with runtime.db.write() as session:
            await runtime.engine.reserve(
                session, account.organization, "tokens", 1,
                ttl=timedelta(seconds=60), idempotency_key="r",
            )  # fmt: skip
    assert await used(runtime, account, "tokens") == 5
    assert (await consume(runtime, account, "agents", 1, "gauge")).status == "accepted"


async def test_a_reservation_made_before_the_suspension_can_be_committed(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    async with runtime.db.write() as session:
        held = await runtime.engine.reserve(
            session, account.organization, "tokens", 10,
            ttl=timedelta(seconds=600), idempotency_key="r",
        )  # fmt: skip
    assert held.reservation is not None
    await suspend(runtime, account, clock.now())
    async with runtime.db.write() as session:
        committed = await runtime.engine.commit(
            session, account.organization, held.reservation.id, 8
        )
    assert (committed.status, committed.used) == ("accepted", 8)


async def test_suspended_usage_is_a_402_on_v1_usage_and_a_typed_error_in_graphql(
    runtime: Runtime, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    key = account.service_api_key
    await suspend(runtime, account, clock.now() - timedelta(seconds=1))
    headers = {"Authorization": f"Bearer {key}"}
    event = {"resource": "tokens", "amount": 3, "idempotency_key": "h1"}
    for body in ({"events": [event]}, {"events": [event, {**event, "idempotency_key": "h2"}]}):
        response = await client.post("/v1/usage", json=body, headers=headers)
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "SUBSCRIPTION_INACTIVE"
    gauge = {"resource": "agents", "amount": 1, "idempotency_key": "g1"}
    response = await client.post("/v1/usage", json={"events": [gauge]}, headers=headers)
    assert response.status_code == 200, response.text

    answer = await graphql(client, key, CONSUME, {"resource": "tokens", "amount": 3, "key": "q"})
    refused = answer["data"]["consumeUsage"]
    assert refused["__typename"] == "SubscriptionInactiveError"
    assert (refused["code"], refused["resource"]) == ("SUBSCRIPTION_INACTIVE", "tokens")
    assert refused["suspendedFrom"].startswith("2026-03-15T11:59:59")
    answer = await graphql(client, key, CONSUME, {"resource": "agents", "amount": 1, "key": "g"})
    assert answer["data"]["consumeUsage"] == {"__typename": "UsageDecision", "status": "ACCEPTED",
                                              "used": 2}  # fmt: skip
    assert await used(runtime, account, "tokens") == 0
