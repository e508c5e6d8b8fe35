"""An organization's currency: chosen when it opens, used for plans, changes and invoices."""

from __future__ import annotations

import httpx
import pytest

from billing import repository
from billing.accounts import OpenedAccount, open_account
from billing.catalog import CurrencyNotOffered
from billing.closing import close_due_periods
from core.clock import FrozenClock
from core.errors import ErrorCode
from tally.runtime import Runtime
from tests.support import at, graphql

pytestmark = pytest.mark.anyio

# Built-in plan ids (with other prices), so that other tests closing every organization's
# periods on the built-in catalog know the plans of this module's organizations.
PLANS_TEXT = """
[plans.starter]
name = "Starter"
price_monthly = { EUR = "100.00", USD = "120.00" }
[plans.starter.limits]
tokens = 1000
seats = 3

[plans.scale]
name = "Scale"
price_monthly = { EUR = "300.00", USD = "330.00" }
[plans.scale.limits]
tokens = 100000
seats = 5

[plans.growth]
name = "Growth"
price_monthly = "200.00"
currency = "EUR"
[plans.growth.limits]
tokens = 10000
seats = 5
"""
PLANS = "{ plans { id currencies priceMonthly { amountMinor currency formatted } } }"
PAGE = "{ organization { plan { id priceMonthly { amountMinor currency formatted } } } }"
CHANGE = """
mutation($plan: ID!, $key: String) {
  changePlan(planId: $plan, timing: NOW, idempotencyKey: $key) {
    __typename
    ... on PlanChanged { invoice { amount { amountMinor currency formatted } } }
    ... on InvalidInputError { field }
    ... on Error { code message }
  }
}
"""


@pytest.fixture
def plans() -> str:
    return PLANS_TEXT


async def open_in(runtime: Runtime, plan: str, currency: str | None) -> OpenedAccount:
    async with runtime.db.write() as session:
        return await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name="Acme",
            plan_id=plan,
            owner_email="owner@acme.example",
            anchor_day=1,
            currency=currency,
        )


async def test_the_currency_is_chosen_when_the_account_opens(runtime: Runtime) -> None:
    assert (await open_in(runtime, "starter", None)).organization.currency == "EUR"
    assert (await open_in(runtime, "starter", "usd")).organization.currency == "USD"
    with pytest.raises(CurrencyNotOffered) as raised:
        await open_in(runtime, "growth", "USD")
    assert raised.value.code is ErrorCode.CURRENCY_NOT_OFFERED
    assert raised.value.message == "plan 'growth' is not offered in USD; it is offered in EUR"


async def test_plans_are_listed_and_priced_in_the_organizations_currency(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    dollars = await open_in(runtime, "starter", "USD")
    body = await graphql(client, dollars.owner_api_key, PLANS)
    assert body["data"]["plans"] == [
        {"id": "starter", "currencies": ["EUR", "USD"],
         "priceMonthly": {"amountMinor": 12_000, "currency": "USD", "formatted": "$120.00"}},
        {"id": "scale", "currencies": ["EUR", "USD"],
         "priceMonthly": {"amountMinor": 33_000, "currency": "USD", "formatted": "$330.00"}},
    ]  # fmt: skip
    page = await graphql(client, dollars.owner_api_key, PAGE)
    assert page["data"]["organization"]["plan"]["priceMonthly"]["currency"] == "USD"
    euros = await open_in(runtime, "starter", None)
    body = await graphql(client, euros.owner_api_key, PLANS)
    assert [plan["id"] for plan in body["data"]["plans"]] == ["starter", "growth", "scale"]


async def test_a_plan_change_is_priced_in_the_currency_and_refused_outside_it(
    runtime: Runtime, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    clock.set(at(2026, 3, 1))
    dollars = await open_in(runtime, "starter", "USD")
    clock.set(at(2026, 3, 16, 12))
    refused = await graphql(client, dollars.owner_api_key, CHANGE, {"plan": "growth", "key": "a"})
    assert refused["data"]["changePlan"] == {
        "__typename": "InvalidInputError", "field": "currency",
        "code": "CURRENCY_NOT_OFFERED",
        "message": "plan 'growth' is not offered in USD; it is offered in EUR",
    }  # fmt: skip
    changed = await graphql(client, dollars.owner_api_key, CHANGE, {"plan": "scale", "key": "b"})
    invoice = changed["data"]["changePlan"]["invoice"]
    assert invoice["amount"]["currency"] == "USD"
    assert invoice["amount"]["formatted"].startswith("$")


async def test_the_period_invoice_is_in_the_organizations_currency(
    runtime: Runtime, clock: FrozenClock
) -> None:
    clock.set(at(2026, 3, 1))
    dollars = await open_in(runtime, "starter", "USD")
    clock.set(at(2026, 4, 2))
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, dollars.organization.id)
        subscription = await repository.lock_subscription(session, dollars.organization.id)
        assert organization is not None and subscription is not None
        [closed] = await close_due_periods(
            session,
            runtime.engine,
            runtime.catalog,
            runtime.provider,
            organization,
            subscription,
            clock.now(),
        )
    assert closed.invoice is not None
    assert closed.invoice.currency == "USD"
    assert closed.invoice.total_minor == 14_400  # $120.00 and the seller's 20 % VAT
