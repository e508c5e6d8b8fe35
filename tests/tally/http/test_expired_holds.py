"""`remaining` never counts a reservation that has expired: in decisions (recorded, checked,
reserved) as in the meters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from tests.conftest import OpenOrg
from tests.support import SMALL_PLANS, graphql

pytestmark = pytest.mark.anyio

METER = "{ organization { usage { tokens { used remaining } } } }"


@pytest.fixture
def plans() -> str:
    return SMALL_PLANS


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org(plan="small")


async def post(
    client: httpx.AsyncClient, account: OpenedAccount, path: str, body: Any
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {account.service_api_key}"}
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def tokens(amount: int, key: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"resource": "tokens", "amount": amount}
    return event if key is None else {**event, "idempotency_key": key}


async def test_remaining_leaves_out_reservations_that_expired(
    client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    held = await post(client, account, "/v1/reservations", {**tokens(600, "r"), "ttl_seconds": 60})
    assert held["remaining"] == 400
    clock.advance(timedelta(seconds=61))

    checked = await post(client, account, "/v1/usage/check", {"events": [tokens(100)]})
    assert [(r["status"], r["remaining"]) for r in checked["results"]] == [("accepted", 900)]

    recorded = await post(client, account, "/v1/usage", {"events": [tokens(100, "e")]})
    assert [(r["used"], r["remaining"]) for r in recorded["results"]] == [(100, 900)]

    again = await post(client, account, "/v1/reservations", tokens(50, "r2"))
    assert (again["status"], again["remaining"]) == ("accepted", 850)

    meter = await graphql(client, account.owner_api_key, METER)
    assert meter["data"]["organization"]["usage"]["tokens"] == {"used": 100, "remaining": 850}


async def test_a_replayed_reservation_answers_without_expired_holds(
    client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    await post(client, account, "/v1/reservations", {**tokens(600, "old"), "ttl_seconds": 60})
    fresh = await post(client, account, "/v1/reservations", tokens(100, "fresh"))
    assert fresh["remaining"] == 300
    clock.advance(timedelta(seconds=61))
    replayed = await post(client, account, "/v1/reservations", tokens(100, "fresh"))
    assert (replayed["status"], replayed["remaining"]) == ("duplicate", 900)
    batch = await post(client, account, "/v1/usage", {"events": [tokens(10, "a"), tokens(20, "b")]})
    assert [r["remaining"] for r in batch["results"]] == [890, 870]
