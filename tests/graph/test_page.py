"""The Organization page in one query, as the frontend asks for it."""

from __future__ import annotations

import httpx
import pytest

from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

PAGE = """
query Page {
  organization {
    id name
    plan { id name priceMonthly { amountMinor currency formatted }
           limits { resource limit policy } }
    subscription { status currentPeriodStart currentPeriodEnd resetsOn pendingPlan { id }
                   cancelAtPeriodEnd trialEndsOn usageSuspended
                   paymentIssue { pastDueSince usageStopsAt message } }
    usage {
      percentUsed periodStart periodEnd resetsOn
      tokens { key label unit used limit remaining percent resets display }
      documents { used limit display }
      agents { used limit display }
      seats { used limit display }
      resources { key display }
    }
    invoices(first: 5) { nodes { id number date amount { formatted } status pdfUrl hostedUrl }
                         pageInfo { hasNextPage endCursor } }
    members { email role status }
  }
}
"""


async def test_the_page_query_answers_the_whole_page(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "agents", 1, idempotency_key="agent-1"
        )
    body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    organization = body["data"]["organization"]
    assert organization["id"] == account.organization.id
    assert organization["plan"] == {
        "id": "ecommerce-enterprise",
        "name": "Ecommerce Enterprise",
        "priceMonthly": {"amountMinor": 189000, "currency": "EUR", "formatted": "€1,890.00"},
        "limits": [
            {"resource": "tokens", "limit": 200000000, "policy": "HARD"},
            {"resource": "documents", "limit": 100000, "policy": "HARD"},
            {"resource": "agents", "limit": 5, "policy": "HARD"},
            {"resource": "seats", "limit": 10, "policy": "HARD"},
        ],
    }
    assert organization["subscription"] == {
        "status": "ACTIVE",
        "currentPeriodStart": "2026-03-01T00:00:00+00:00",
        "currentPeriodEnd": "2026-04-01T00:00:00+00:00",
        "resetsOn": "2026-04-01",
        "pendingPlan": None,
        "cancelAtPeriodEnd": False,
        "trialEndsOn": None,
        "usageSuspended": False,
        "paymentIssue": None,
    }
    usage = organization["usage"]
    assert usage["tokens"] == {
        "key": "tokens", "label": "AI Tokens", "unit": "tokens", "used": 0, "limit": 200000000,
        "remaining": 200000000, "percent": 0.0, "resets": True, "display": "0 / 200.0M",
    }  # fmt: skip
    assert usage["documents"]["display"] == "0 / 100.0K"
    assert usage["agents"]["display"] == "1 / 5"
    assert usage["seats"]["display"] == "1 / 10"
    assert usage["percentUsed"] == 20.0
    assert usage["resetsOn"] == "2026-04-01"
    assert [r["key"] for r in usage["resources"]] == ["tokens", "documents", "agents", "seats"]
    assert organization["invoices"] == {
        "nodes": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }
    assert organization["members"] == [
        {"email": account.owner.email, "role": "OWNER", "status": "active"}
    ]


async def test_counts_past_2_to_the_31_are_exact(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(plan="scale")
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 2**31 + 5, idempotency_key="big"
        )
    body = await graphql(
        client, account.owner_api_key, "{ organization { usage { tokens { used display } } } }"
    )
    assert body["data"]["organization"]["usage"]["tokens"] == {
        "used": 2**31 + 5,
        "display": "2.1B / 600.0M",
    }


async def test_plans_and_resources(client: httpx.AsyncClient, open_org: OpenOrg) -> None:
    account = await open_org()
    body = await graphql(
        client,
        account.owner_api_key,
        "{ plans { id name priceMonthly { formatted } } resources { key label unit kind } }",
    )
    plans = body["data"]["plans"]
    assert len(plans) >= 4
    assert {"id": "ecommerce-enterprise", "name": "Ecommerce Enterprise",
            "priceMonthly": {"formatted": "€1,890.00"}} in plans  # fmt: skip
    prices = [p["priceMonthly"]["formatted"] for p in plans]
    assert prices[0] == "€49.00"
    assert body["data"]["resources"][0] == {
        "key": "tokens",
        "label": "AI Tokens",
        "unit": "tokens",
        "kind": "METERED",
    }


async def test_graphiql_is_served_on_get(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
