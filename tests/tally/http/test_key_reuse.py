"""An idempotency key replayed with another resource or amount is refused (409
IDEMPOTENCY_KEY_REUSED; in GraphQL a typed error), never answered with the first decision.

A batch holding such an event is refused whole, naming the event, before anything is written;
the same key, resource and amount is still a replay (`duplicate`)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import SMALL_PLANS, graphql

pytestmark = pytest.mark.anyio

CONSUME = """mutation($resource: String!, $amount: BigInt!, $key: String!) {
  consumeUsage(resource: $resource, amount: $amount, idempotencyKey: $key) {
    __typename
    ... on UsageDecision { status used }
    ... on IdempotencyKeyReusedError { code message idempotencyKey resource amount }
  } }"""
RESERVE = """mutation($amount: BigInt!, $key: String!) {
  reserveUsage(resource: "tokens", amount: $amount, idempotencyKey: $key) {
    __typename
    ... on IdempotencyKeyReusedError { code idempotencyKey resource amount }
  } }"""


@pytest.fixture
def plans() -> str:
    return SMALL_PLANS


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org(plan="small")


def event(resource: str, amount: int, key: str, **more: Any) -> dict[str, Any]:
    return {"resource": resource, "amount": amount, "idempotency_key": key, **more}


async def record(
    client: httpx.AsyncClient, account: OpenedAccount, *events: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        "/v1/usage",
        json={"events": list(events)},
        headers={"Authorization": f"Bearer {account.service_api_key}"},
    )


async def used(runtime: Runtime, account: OpenedAccount) -> dict[str, int]:
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, account.organization)
    return {meter.resource.key: meter.used for meter in snapshot.resources}


async def test_a_single_event_with_another_amount_or_resource_is_a_409(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    first = await record(client, account, event("tokens", 300, "k"))
    assert first.json()["results"][0]["status"] == "accepted"

    other_amount = await record(client, account, event("tokens", 500, "k"))
    assert other_amount.status_code == 409, other_amount.text
    assert other_amount.json() == {
        "error": {
            "code": "IDEMPOTENCY_KEY_REUSED",
            "message": "idempotency key 'k' was already used for 300 tokens; a replay must "
            "repeat its resource and amount",
        }
    }
    other_resource = await record(client, account, event("agents", 300, "k"))
    assert other_resource.status_code == 409
    assert other_resource.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    same = await record(client, account, event("tokens", 300, "k"))
    assert same.status_code == 200
    assert [(r["status"], r["used"]) for r in same.json()["results"]] == [("duplicate", 300)]
    assert (await used(runtime, account))["tokens"] == 300


async def test_a_batch_with_a_reused_key_is_refused_whole_naming_the_event(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await record(client, account, event("tokens", 300, "k"))
    refused = await record(
        client,
        account,
        event("tokens", 100, "new"),
        event("agents", 1, "agent", agent_id="a-1"),
        event("tokens", 301, "k"),
    )
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert error["message"].startswith("events[2]: idempotency key 'k' was already used for 300")
    assert await used(runtime, account) == {"tokens": 300, "documents": 0, "agents": 0, "seats": 1}

    replayed = await record(client, account, event("tokens", 100, "new"), event("tokens", 300, "k"))
    assert [r["status"] for r in replayed.json()["results"]] == ["accepted", "duplicate"]


async def test_the_same_key_twice_in_one_batch_with_another_amount_or_resource(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    amounts = await record(
        client, account, event("tokens", 10, "twice"), event("tokens", 20, "twice")
    )
    assert amounts.status_code == 409, amounts.text
    assert amounts.json()["error"]["message"].startswith(
        "events[1]: idempotency key 'twice' was already used for 10 tokens"
    )
    resources = await record(
        client, account, event("tokens", 1, "both"), event("agents", 1, "both", agent_id="a")
    )
    assert resources.status_code == 409
    assert resources.json()["error"]["message"].startswith("events[1]: ")
    assert (await used(runtime, account))["tokens"] == 0

    same = await record(client, account, event("tokens", 10, "twice"), event("tokens", 10, "twice"))
    assert [(r["status"], r["used"]) for r in same.json()["results"]] == [
        ("accepted", 10),
        ("duplicate", 10),
    ]


async def test_a_key_first_refused_by_the_limit_may_be_used_again(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    """Only a recorded use binds a key: a refusal records nothing, so the same key with a
    smaller amount is a new event, in one batch as in two requests."""
    batch = await record(client, account, event("tokens", 5000, "job"), event("tokens", 50, "job"))
    assert [r["status"] for r in batch.json()["results"]] == ["rejected", "accepted"]


async def test_check_refuses_a_reused_key_like_recording_would(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await record(client, account, event("tokens", 300, "k"))
    check = await client.post(
        "/v1/usage/check",
        json={"events": [{"resource": "tokens", "amount": 1}, event("tokens", 30, "k")]},
        headers={"Authorization": f"Bearer {account.service_api_key}"},
    )
    assert check.status_code == 409, check.text
    assert check.json()["error"]["message"].startswith("events[1]: idempotency key 'k'")


async def test_a_reservation_key_reused_for_another_amount_is_a_409(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    headers = {"Authorization": f"Bearer {account.service_api_key}"}
    body = {"resource": "tokens", "amount": 600, "idempotency_key": "r-1"}
    assert (await client.post("/v1/reservations", json=body, headers=headers)).status_code == 201
    again = await client.post("/v1/reservations", json={**body, "amount": 700}, headers=headers)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == {
        "code": "IDEMPOTENCY_KEY_REUSED",
        "message": "idempotency key 'r-1' was already used for a reservation of 600 tokens; "
        "a replay must repeat its resource and amount",
    }
    same = await client.post("/v1/reservations", json=body, headers=headers)
    assert (same.status_code, same.json()["status"]) == (200, "duplicate")


async def test_graphql_answers_a_reused_key_with_a_typed_error(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    variables = {"resource": "tokens", "amount": 300, "key": "g"}
    first = await graphql(client, key, CONSUME, variables)
    assert first["data"]["consumeUsage"] == {
        "__typename": "UsageDecision",
        "status": "ACCEPTED",
        "used": 300,
    }
    reused = await graphql(client, key, CONSUME, {**variables, "amount": 301})
    assert reused["data"]["consumeUsage"] == {
        "__typename": "IdempotencyKeyReusedError",
        "code": "IDEMPOTENCY_KEY_REUSED",
        "message": "idempotency key 'g' was already used for 300 tokens; a replay must repeat "
        "its resource and amount",
        "idempotencyKey": "g",
        "resource": "tokens",
        "amount": 300,
    }
    assert (await graphql(client, key, RESERVE, {"amount": 5, "key": "rg"}))["data"]
    reserved = await graphql(client, key, RESERVE, {"amount": 6, "key": "rg"})
    assert reserved["data"]["reserveUsage"] == {
        "__typename": "IdempotencyKeyReusedError",
        "code": "IDEMPOTENCY_KEY_REUSED",
        "idempotencyKey": "rg",
        "resource": "tokens",
        "amount": 5,
    }


async def test_a_reservation_committed_again_with_another_amount_is_a_409(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    headers = {"Authorization": f"Bearer {account.service_api_key}"}
    body = {"resource": "tokens", "amount": 600, "idempotency_key": "job"}
    held = (await client.post("/v1/reservations", json=body, headers=headers)).json()
    path = f"/v1/reservations/{held['reservation']['id']}/commit"
    first = await client.post(path, json={"amount": 250}, headers=headers)
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    again = await client.post(path, json={"amount": 250}, headers=headers)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    other = await client.post(path, json={"amount": 300}, headers=headers)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["message"].startswith(
        "idempotency key 'job' was already used for 250 tokens"
    )
    assert (await used(runtime, account))["tokens"] == 250
