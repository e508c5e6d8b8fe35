"""Counters are 64-bit: usage that would take one past 2^63 - 1 is refused with
AMOUNT_TOO_LARGE, never a database error; so is a cost past it, and an amount past it in the
JSON is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

INT64_MAX = 2**63 - 1
HALF = 2**62

PLANS = """
[plans.open]
name = "Open"
price_monthly = "1.00"
currency = "EUR"
[plans.open.limits]
seats = 5
"""
"""Tokens unlimited."""

CONSUME = """mutation($amount: BigInt!, $key: String!) {
  consumeUsage(resource: "tokens", amount: $amount, idempotencyKey: $key) {
    __typename ... on UsageDecision { used } ... on InvalidInputError { code message field } } }"""


@pytest.fixture
def plans() -> str:
    return PLANS


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org(plan="open")


def event(amount: int, key: str, **more: Any) -> dict[str, Any]:
    return {"resource": "tokens", "amount": amount, "idempotency_key": key, **more}


async def post(
    client: httpx.AsyncClient, account: OpenedAccount, path: str, body: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {account.service_api_key}"}
    return await client.post(path, json=body, headers=headers)


async def record(
    client: httpx.AsyncClient, account: OpenedAccount, *events: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await post(client, account, "/v1/usage", {"events": list(events)})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def tokens_used(runtime: Runtime, account: OpenedAccount) -> int:
    async with runtime.db.read() as session:
        return (await runtime.engine.usage(session, account.organization)).get("tokens").used


async def test_an_event_that_would_pass_the_counters_range_is_refused(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    [first] = await record(client, account, event(HALF, "a"))
    assert (first["status"], first["used"], first["limit"]) == ("accepted", HALF, None)

    [over] = await record(client, account, event(HALF, "b"))
    assert over == {
        "idempotency_key": "b",
        "status": "rejected",
        "used": HALF,
        "limit": None,
        "remaining": None,
        "error": {
            "code": "AMOUNT_TOO_LARGE",
            "message": f"tokens: {HALF} more would take the counter past {INT64_MAX}, the "
            f"largest count Tally keeps ({HALF} used)",
        },
    }
    [last] = await record(client, account, event(HALF - 1, "c"))
    assert (last["status"], last["used"]) == ("accepted", INT64_MAX)
    assert await tokens_used(runtime, account) == INT64_MAX


async def test_a_batch_is_decided_event_by_event_within_the_range(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    results = await record(client, account, event(HALF, "a"), event(HALF, "b"), event(7, "c"))
    assert [(r["status"], r["error"] and r["error"]["code"]) for r in results] == [
        ("accepted", None),
        ("rejected", "AMOUNT_TOO_LARGE"),
        ("accepted", None),
    ]
    assert await tokens_used(runtime, account) == HALF + 7


async def test_a_reservation_counts_in_the_range(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    held = await post(
        client,
        account,
        "/v1/reservations",
        {"resource": "tokens", "amount": HALF, "idempotency_key": "r"},
    )
    assert held.status_code == 201, held.text
    [over] = await record(client, account, event(HALF, "b"))
    assert (over["status"], over["error"]["code"]) == ("rejected", "AMOUNT_TOO_LARGE")
    again = await post(
        client,
        account,
        "/v1/reservations",
        {"resource": "tokens", "amount": HALF, "idempotency_key": "r2"},
    )
    assert (again.status_code, again.json()["error"]["code"]) == (200, "AMOUNT_TOO_LARGE")
    assert await tokens_used(runtime, account) == 0


async def test_a_cost_past_the_range_is_refused_before_anything_is_written(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    response = await post(
        client, account, "/v1/usage", {"events": [event(5, "ok"), event(HALF, "p", model="gpt-4o")]}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "AMOUNT_TOO_LARGE"
    assert error["message"].startswith("events[1]: ")
    assert "gpt-4o" in error["message"]
    assert await tokens_used(runtime, account) == 0


@pytest.mark.parametrize("amount", [2**63, -(2**63), 10**30])
async def test_an_amount_past_the_range_in_the_json_is_a_400_naming_it(
    client: httpx.AsyncClient, account: OpenedAccount, amount: int
) -> None:
    body = f'{{"events": [{{"resource": "tokens", "amount": {amount}, "idempotency_key": "j"}}]}}'
    response = await client.post(
        "/v1/usage",
        content=body,
        headers={
            "Authorization": f"Bearer {account.service_api_key}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_AMOUNT"
    assert error["message"] == (f"events[0].amount must be between -{INT64_MAX} and {INT64_MAX}")


async def test_graphql_answers_the_range_with_a_typed_error(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    assert (await graphql(client, key, CONSUME, {"amount": HALF, "key": "g1"}))["data"] == {
        "consumeUsage": {"__typename": "UsageDecision", "used": HALF}
    }
    body = await graphql(client, key, CONSUME, {"amount": HALF, "key": "g2"})
    refused = body["data"]["consumeUsage"]
    assert (refused["__typename"], refused["code"], refused["field"]) == (
        "InvalidInputError",
        "AMOUNT_TOO_LARGE",
        "amount",
    )
