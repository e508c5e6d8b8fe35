"""An `occurred_at` written with a non-UTC offset counts in the UTC hour it happened in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

STATS = """query {
  organization { usageStats(from: "2026-03-15T00:00:00Z", to: "2026-03-16T00:00:00Z",
                            granularity: HOUR) {
    totalTokens tokensOverTime { start tokens } } } }"""


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org()


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-03-15T16:40:00+05:30",  # India: 11:10 UTC
        "2026-03-15T16:55:00+05:45",  # Nepal: 11:10 UTC
        "2026-03-15T07:40:00-03:30",  # Newfoundland: 11:10 UTC
    ],
)
async def test_an_offset_that_is_not_whole_hours_lands_in_its_utc_hour(
    client: httpx.AsyncClient, account: OpenedAccount, occurred_at: str
) -> None:
    utc = "2026-03-15T11:50:00Z"
    events: list[dict[str, Any]] = [
        {"resource": "tokens", "amount": 700, "idempotency_key": "far", "occurred_at": occurred_at},
        {"resource": "tokens", "amount": 5, "idempotency_key": "utc", "occurred_at": utc},
    ]
    response = await client.post(
        "/v1/usage",
        json={"events": events},
        headers={"Authorization": f"Bearer {account.service_api_key}"},
    )
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]

    body = await graphql(client, account.owner_api_key, STATS)
    stats = body["data"]["organization"]["usageStats"]
    assert stats["totalTokens"] == 705
    points = [(p["start"], p["tokens"]) for p in stats["tokensOverTime"] if p["tokens"]]
    assert points == [("2026-03-15T11:00:00+00:00", 705)]
