"""Organization settings, the billing portal and plan recommendations through GraphQL."""

from __future__ import annotations

import httpx
import pytest

from billing.accounts import create_api_key
from core.clock import FrozenClock
from core.orgs import Role
from tally.runtime import Runtime
from tests.conftest import START, OpenOrg
from tests.support import at, graphql

pytestmark = pytest.mark.anyio

UPDATE = """
mutation($input: OrganizationSettingsInput!, $org: ID) {
  updateOrganizationSettings(organizationId: $org, input: $input) {
    __typename
    ... on OrganizationSettings { legalName billingEmail city country vatId }
    ... on InvalidInputError { field }
    ... on Error { code message }
  }
}
"""
PORTAL = """
mutation($url: String!, $org: ID) {
  createBillingPortalSession(organizationId: $org, returnUrl: $url) {
  __typename ... on BillingPortalSession { url } ... on Error { code message } } }
"""
RECOMMENDATIONS = """
{ organization { planRecommendations { plan { id } current fits recommended
  reasons { resource projected limit fits message } } } }
"""
UNLIMITED = "{ organization { planRecommendations { plan { id } unlimitedResources } } }"


async def test_settings_are_validated_stored_and_read_back(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    key = account.owner_api_key
    changes = {"legalName": " Acme SAS ", "billingEmail": "billing@acme.example",
               "country": "fr", "vatId": "fr 40-303.265.045", "city": "Paris"}  # fmt: skip
    body = await graphql(client, key, UPDATE, {"input": changes})
    assert body["data"]["updateOrganizationSettings"] == {
        "__typename": "OrganizationSettings", "legalName": "Acme SAS",
        "billingEmail": "billing@acme.example", "city": "Paris", "country": "FR",
        "vatId": "FR40303265045",
    }  # fmt: skip
    bad = await graphql(client, key, UPDATE, {"input": {"billingEmail": "nope"}})
    assert bad["data"]["updateOrganizationSettings"]["__typename"] == "InvalidInputError"
    assert bad["data"]["updateOrganizationSettings"]["field"] == "billingEmail"
    mismatch = await graphql(client, key, UPDATE, {"input": {"country": "DE"}})
    assert mismatch["data"]["updateOrganizationSettings"]["field"] == "vatId"
    cleared = await graphql(client, key, UPDATE, {"input": {"city": None}})
    assert cleared["data"]["updateOrganizationSettings"]["city"] is None
    page = await graphql(client, key, "{ organization { settings { legalName city vatId } } }")
    assert page["data"]["organization"]["settings"] == {
        "legalName": "Acme SAS", "city": None, "vatId": "FR40303265045"
    }  # fmt: skip


async def test_settings_of_another_organization_answer_as_missing_ones(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    mine, theirs = await open_org(), await open_org()
    answers = [
        await graphql(client, mine.owner_api_key, query, variables | {"org": org})
        for org in (theirs.organization.id, "e" * 32)
        for query, variables in (
            (UPDATE, {"input": {"city": "Lyon"}}),
            (PORTAL, {"url": "https://app.example/org"}),
        )
    ]
    assert answers[:2] == answers[2:]
    assert answers[0]["data"]["updateOrganizationSettings"] == {
        "__typename": "NotFoundError", "code": "NOT_FOUND", "message": "no such organization"
    }  # fmt: skip
    async with runtime.db.write() as session:
        _, member_key = await create_api_key(
            session, runtime.engine, mine.organization, name="m", role=Role.MEMBER
        )
    refused = await graphql(client, member_key, UPDATE, {"input": {"city": "Lyon"}})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_portal_needs_stripe(client: httpx.AsyncClient, open_org: OpenOrg) -> None:
    account = await open_org()
    body = await graphql(client, account.owner_api_key, PORTAL, {"url": "https://app.example/"})
    result = body["data"]["createBillingPortalSession"]
    assert result["__typename"] == "BillingPortalUnavailableError"
    assert result["code"] == "PORTAL_UNAVAILABLE"
    assert "needs the Stripe provider (TALLY_BILLING=stripe)" in result["message"]
    bad = await graphql(client, account.owner_api_key, PORTAL, {"url": "javascript:alert(1)"})
    assert bad["data"]["createBillingPortalSession"]["__typename"] == "InvalidInputError"


async def test_recommendations_rank_the_plans_that_fit_cheapest_first(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    clock.set(at(2026, 3, 1))
    account = await open_org(plan="ecommerce-enterprise")
    clock.set(START)
    async with runtime.db.write() as session:
        for resource, amount in (("tokens", 25_000_000), ("agents", 2)):
            await runtime.engine.consume(
                session, account.organization, resource, amount, idempotency_key=resource
            )
    body = await graphql(client, account.owner_api_key, RECOMMENDATIONS)
    ranked = body["data"]["organization"]["planRecommendations"]
    assert [(r["plan"]["id"], r["current"], r["fits"], r["recommended"]) for r in ranked] == [
        ("ecommerce-pro", False, True, True),
        ("ecommerce-enterprise", True, True, False),
        ("scale", False, True, False),
    ]
    assert ranked[0]["reasons"][0] == {
        "resource": "tokens", "projected": 53_448_275, "limit": 80_000_000, "fits": True,
        "message": "tokens: projected 53.4M of 80.0M",
    }  # fmt: skip
    assert ranked[0]["reasons"][2]["message"] == "agents: 2 of 3"
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 5_000_000, idempotency_key="more"
        )
    body = await graphql(client, account.owner_api_key, RECOMMENDATIONS)
    ranked = body["data"]["organization"]["planRecommendations"]
    assert [(r["plan"]["id"], r["recommended"]) for r in ranked] == [
        ("ecommerce-enterprise", True),
        ("scale", False),
    ]


async def test_the_current_plan_is_listed_even_when_it_does_not_fit(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    clock.set(at(2026, 3, 1))
    account = await open_org(plan="starter")
    clock.set(START)
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 9_000_000, idempotency_key="t"
        )
    body = await graphql(client, account.owner_api_key, RECOMMENDATIONS)
    ranked = body["data"]["organization"]["planRecommendations"]
    assert (ranked[0]["plan"]["id"], ranked[0]["current"], ranked[0]["fits"]) == (
        "starter", True, False
    )  # fmt: skip
    assert [r["plan"]["id"] for r in ranked if r["recommended"]] == ["growth"]


async def test_an_organization_opened_mid_period_burns_from_its_opening(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    """Opened at noon on 15 March (period from 1 March), 20M tokens by noon on 20 March:
    projected from the opening (5 days) over its 16.5 days to 1 April, not from 1 March."""
    account = await open_org(plan="ecommerce-pro")
    clock.set(at(2026, 3, 20, 12))
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 20_000_000, idempotency_key="t"
        )
    body = await graphql(client, account.owner_api_key, RECOMMENDATIONS)
    ranked = body["data"]["organization"]["planRecommendations"]
    assert ranked[0]["reasons"][0]["projected"] == 66_000_000
    assert [r["plan"]["id"] for r in ranked if r["recommended"]] == ["ecommerce-enterprise"]
    body = await graphql(client, account.owner_api_key, UNLIMITED)
    unlimited = {
        r["plan"]["id"]: r["unlimitedResources"]
        for r in body["data"]["organization"]["planRecommendations"]
    }
    assert unlimited == {"ecommerce-pro": [], "ecommerce-enterprise": [], "scale": []}
