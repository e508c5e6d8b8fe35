"""Changing plan through GraphQL: preview, upgrade, downgrade, guards, tenancy, all or nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.accounts import OpenedAccount, create_api_key
from billing.models import Invoice, PlanChange
from billing.provider import ProviderError
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization, Role
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

PREVIEW = """
mutation($plan: ID!, $org: ID) { previewPlanChange(organizationId: $org, planId: $plan) {
  __typename
  ... on PlanChangePreview {
    currentPlan { id } newPlan { id } timing effectiveAt allowed
    amountDueNow { amountMinor formatted } credit { amountMinor formatted }
    charge { amountMinor formatted } carriedCredit { amountMinor }
    resources { resource used currentLimit newLimit fits }
    blockers { resource used newLimit message } warnings }
  ... on Error { code message }
} }
"""
CHANGE = """
mutation($plan: ID!, $timing: PlanChangeTiming, $key: String, $org: ID) {
  changePlan(organizationId: $org, planId: $plan, timing: $timing, idempotencyKey: $key) {
    __typename
    ... on PlanChanged { effectiveAt subscription { status pendingPlan { id } }
                         invoice { id number amount { amountMinor } pdfUrl hostedUrl } }
    ... on PlanChangeBlockedError { blockers { resource used newLimit message } }
    ... on InvalidInputError { field }
    ... on Error { code message }
  }
}
"""
PLAN = "{ organization { plan { id } subscription { pendingPlan { id } } } }"


async def use(runtime: Runtime, account: OpenedAccount, resource: str, amount: int) -> None:
    async with runtime.db.write() as session:
        decision = await runtime.engine.consume(
            session, account.organization, resource, amount, idempotency_key=f"{resource}-{amount}"
        )
    assert decision.allowed


async def counts(runtime: Runtime, organization_id: str) -> tuple[int, int, str]:
    """Invoices, plan changes in force or scheduled, and the plan of the organization."""
    async with runtime.db.read() as session:
        invoices = await session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.organization_id == organization_id)  # type: ignore[arg-type]
        )
        changes = await session.scalar(
            select(func.count())
            .select_from(PlanChange)
            .where(
                PlanChange.organization_id == organization_id,  # type: ignore[arg-type]
                col(PlanChange.status).in_(("applied", "scheduled")),
            )
        )
        organization = await session.get(Organization, organization_id)
    assert organization is not None
    return int(invoices or 0), int(changes or 0), organization.plan_id


async def test_preview_of_an_upgrade_prorates_to_the_minor_unit(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    body = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "scale"})
    preview = body["data"]["previewPlanChange"]
    print("previewPlanChange:", json.dumps(preview, indent=1))
    assert preview["__typename"] == "PlanChangePreview"
    assert (preview["timing"], preview["effectiveAt"]) == ("NOW", "2026-03-15T12:00:00+00:00")
    assert preview["credit"] == {"amountMinor": 100597, "formatted": "€1,005.97"}
    assert preview["charge"] == {"amountMinor": 260806, "formatted": "€2,608.06"}
    assert preview["amountDueNow"] == {"amountMinor": 160209, "formatted": "€1,602.09"}
    assert preview["allowed"] is True and preview["blockers"] == [] == preview["warnings"]
    assert preview["resources"][2] == {
        "resource": "agents", "used": 0, "currentLimit": 5, "newLimit": 20, "fits": True
    }  # fmt: skip


async def test_a_downgrade_below_a_gauge_in_use_is_blocked(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    await use(runtime, account, "agents", 4)
    preview = (await graphql(client, account.owner_api_key, PREVIEW, {"plan": "growth"}))["data"][
        "previewPlanChange"
    ]
    blocker = {
        "resource": "agents",
        "used": 4,
        "newLimit": 2,
        "message": "4 agents in use, the plan allows 2: remove 2 agents",
    }
    assert preview["allowed"] is False
    assert preview["blockers"] == [blocker]
    before = await counts(runtime, account.organization.id)
    body = await graphql(client, account.owner_api_key, CHANGE, {"plan": "growth"})
    result = body["data"]["changePlan"]
    assert result["__typename"] == "PlanChangeBlockedError"
    assert result["code"] == "PLAN_CHANGE_BLOCKED" and result["blockers"] == [blocker]
    assert await counts(runtime, account.organization.id) == before


async def test_metered_usage_above_the_new_limit_only_warns(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    await use(runtime, account, "tokens", 40_000_000)
    body = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "growth"})
    preview = body["data"]["previewPlanChange"]
    assert preview["allowed"] is True and preview["blockers"] == []
    assert preview["warnings"] == [
        "AI Tokens: 40.0M used this period; the new plan allows 30.0M per period"
    ]


async def test_a_downgrade_waits_for_the_period_end_by_default(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    body = await graphql(client, account.owner_api_key, CHANGE, {"plan": "growth"})
    result = body["data"]["changePlan"]
    assert result == {
        "__typename": "PlanChanged",
        "effectiveAt": "2026-04-01T00:00:00+00:00",
        "subscription": {"status": "ACTIVE", "pendingPlan": {"id": "growth"}},
        "invoice": None,
    }
    page = await graphql(client, account.owner_api_key, PLAN)
    assert page["data"]["organization"] == {
        "plan": {"id": "ecommerce-enterprise"},
        "subscription": {"pendingPlan": {"id": "growth"}},
    }


async def test_a_downgrade_now_carries_the_difference_as_credit(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    body = await graphql(client, account.owner_api_key, CHANGE, {"plan": "growth", "timing": "NOW"})
    assert body["data"]["changePlan"]["invoice"] is None
    assert await counts(runtime, account.organization.id) == (0, 1, "growth")


async def test_an_upgrade_takes_effect_now_with_a_prorated_invoice(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    variables = {"plan": "scale", "key": "upgrade-1"}
    first = (await graphql(client, account.owner_api_key, CHANGE, variables))["data"]["changePlan"]
    assert first["__typename"] == "PlanChanged"
    assert first["effectiveAt"] == "2026-03-15T12:00:00+00:00"
    invoice = first["invoice"]
    assert invoice["number"].startswith("TAL-")
    assert invoice["amount"] == {"amountMinor": 192251}
    assert invoice["pdfUrl"].startswith("http://127.0.0.1:8000/billing/invoices/")
    again = (await graphql(client, account.owner_api_key, CHANGE, variables))["data"]["changePlan"]
    assert again["invoice"]["number"] == invoice["number"]
    assert await counts(runtime, account.organization.id) == (1, 1, "scale")
    reused = await graphql(client, account.owner_api_key, CHANGE, {**variables, "plan": "growth"})
    assert reused["data"]["changePlan"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_the_same_plan_and_an_unknown_plan_are_typed_errors(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    same = await graphql(client, account.owner_api_key, CHANGE, {"plan": "ecommerce-enterprise"})
    assert same["data"]["changePlan"]["__typename"] == "InvalidInputError"
    assert same["data"]["changePlan"]["code"] == "SAME_PLAN"
    assert same["data"]["changePlan"]["field"] == "planId"
    unknown = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "platinum"})
    assert unknown["data"]["previewPlanChange"]["__typename"] == "NotFoundError"
    assert unknown["data"]["previewPlanChange"]["code"] == "PLAN_NOT_FOUND"


async def test_another_organization_answers_as_a_missing_one(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    mine, theirs = await open_org(name="A"), await open_org(name="B")
    answers: list[dict[str, Any]] = []
    for org in (theirs.organization.id, "f" * 32):
        for query in (PREVIEW, CHANGE):
            answers.append(
                await graphql(client, mine.owner_api_key, query, {"plan": "scale", "org": org})
            )
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert answers[1]["data"]["changePlan"]["__typename"] == "NotFoundError"
    assert await counts(runtime, theirs.organization.id) == (0, 0, "ecommerce-enterprise")


async def test_a_plain_member_may_not_change_plan(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        _, member_key = await create_api_key(
            session, runtime.engine, account.organization, name="m", role=Role.MEMBER
        )
        _, billing_key = await create_api_key(
            session, runtime.engine, account.organization, name="b", role=Role.BILLING
        )
    refused = await graphql(client, member_key, CHANGE, {"plan": "scale"})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    allowed = await graphql(client, billing_key, PREVIEW, {"plan": "scale"})
    assert allowed["data"]["previewPlanChange"]["__typename"] == "PlanChangePreview"


class FailingProvider:
    """A provider whose every call fails, as Stripe does when it is down."""

    name = "failing"

    async def preview_change(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def push_change(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def apply_change(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def send_pending(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def close_period(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def portal_url(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def checkout_url(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def cancel_scheduled(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def set_cancel_at_period_end(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def open_subscription(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def charge(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")

    async def record_charge(self, *args: object) -> NoReturn:
        raise ProviderError("Stripe: could not connect")


@pytest.fixture
async def failing(settings: Settings, clock: FrozenClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings, clock, provider=FailingProvider())
    yield runtime
    await runtime.db.dispose()


async def test_a_provider_failure_changes_nothing(failing: Runtime, open_org: OpenOrg) -> None:
    account = await open_org()
    transport = httpx.ASGITransport(app=create_app(failing))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
        for timing in ("NOW", "PERIOD_END"):
            variables = {"plan": "scale", "timing": timing}
            body = await graphql(client, account.owner_api_key, CHANGE, variables)
            assert body["data"]["changePlan"] == {
                "__typename": "ProviderFailedError",
                "code": "PROVIDER_ERROR",
                "message": "Stripe: could not connect",
            }
        page = await graphql(client, account.owner_api_key, PLAN)
    assert page["data"]["organization"]["subscription"]["pendingPlan"] is None
    assert await counts(failing, account.organization.id) == (0, 0, "ecommerce-enterprise")
