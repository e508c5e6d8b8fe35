"""The spend cap: overage past it is refused (SPEND_CAP_REACHED), alerts at 80 and 100 %,
never passed under concurrency; the page shows the cap and what is spent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from billing.accounts import OpenedAccount, open_account
from billing.limits_plugin import units_paid_by
from core.clock import FrozenClock
from core.config import Settings
from core.errors import InvalidInput
from core.orgs import Organization, Role
from limits import Decision, LimitExceeded, Resource, hookimpl
from limits import repository as limits_repository
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.support import graphql, member_key, write_plans

pytestmark = pytest.mark.anyio

PLANS = """
[plans.flat]
name = "Flat"
price_monthly = { EUR = "10.00", USD = "11.00" }
[plans.flat.limits]
tokens = 1000

[plans.metered]
name = "Metered"
price_monthly = { EUR = "100.00", USD = "110.00" }
[plans.metered.limits]
tokens = 1000
[plans.metered.policies]
tokens = "overage"
[plans.metered.overage]
tokens = { EUR = "0.01", USD = "0.03" }

[topups.small]
name = "500 tokens"
tokens = 500
price = { EUR = "4.00", USD = "5.00" }
"""

SPEND_CAP = """
mutation($amount: BigInt) {
  setSpendCap(amountMinor: $amount) {
    __typename
    ... on SpendCapSet { spendCap { cap { amountMinor currency formatted }
                                    spent { amountMinor formatted } } }
    ... on InvalidInputError { code field message }
  }
}
"""
PAGE = "{ organization { spendCap { cap { amountMinor } spent { amountMinor currency } } } }"


class Recorder:
    def __init__(self) -> None:
        self.crossed: list[tuple[str, int, int]] = []

    @hookimpl
    def tally_spend_cap_crossed(self, resource: Resource, threshold: int, usage: Decision) -> None:
        self.crossed.append((resource.key, threshold, usage.used))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def runtime(
    database_url: str, tmp_path: Path, clock: FrozenClock, recorder: Recorder
) -> AsyncIterator[Runtime]:
    plans = write_plans(tmp_path / "plans.toml", PLANS)
    runtime = build_runtime(
        Settings(database_url=database_url, plans_path=plans), clock, [(recorder, "recorder")]
    )
    yield runtime
    await runtime.db.dispose()


async def open_org(runtime: Runtime, plan: str = "metered", currency: str = "EUR") -> OpenedAccount:
    async with runtime.db.write() as session:
        return await open_account(
            session, runtime.engine, runtime.catalog, name="Capped", plan_id=plan,
            owner_email="owner@example.com", anchor_day=1, currency=currency,
        )  # fmt: skip


async def consume(runtime: Runtime, organization: Organization, amount: int, key: str) -> Decision:
    async with runtime.db.write() as session:
        return await runtime.engine.consume(
            session, organization, "tokens", amount, idempotency_key=key
        )


def test_the_units_a_cap_pays_for_are_exact() -> None:
    assert units_paid_by(100, "EUR", Decimal("0.01")) == 100
    assert units_paid_by(100, "EUR", Decimal("0.03")) == 33
    assert units_paid_by(1000, "JPY", Decimal("0.000002")) == 500_000_000
    assert units_paid_by(1, "KWD", Decimal("0.0001")) == 10
    assert units_paid_by(0, "EUR", Decimal("0.01")) == 0
    assert units_paid_by(100, "EUR", Decimal("0")) is None


async def test_hook_tally_spend_cap_crossed(runtime: Runtime, recorder: Recorder) -> None:
    account = await open_org(runtime)
    await runtime.spend_caps.set(account.organization, 100)
    organization = account.organization
    assert (await consume(runtime, organization, 1079, "a")).status == "accepted"
    assert recorder.crossed == []
    await consume(runtime, organization, 1, "b")
    assert recorder.crossed == [("tokens", 80, 1080)]
    assert (await consume(runtime, organization, 20, "c")).used == 1100
    refused = await consume(runtime, organization, 1, "d")
    assert refused.status == "rejected" and refused.error_code == "SPEND_CAP_REACHED"
    error = refused.refusal()
    assert isinstance(error, LimitExceeded) and error.code == "SPEND_CAP_REACHED"
    assert recorder.crossed == [("tokens", 80, 1080), ("tokens", 100, 1100)]
    async with runtime.db.read() as session:
        alerts = await limits_repository.list_alerts(
            session, organization.id, runtime.engine.period(organization).start
        )
    kinds = sorted((alert.kind, alert.threshold) for alert in alerts)
    assert kinds == [("limit", 80), ("limit", 100), ("spend_cap", 80), ("spend_cap", 100)]
    status = await runtime.spend_caps.status(organization)
    assert (status.spent.amount_minor, status.cap) == (100, status.cap)


async def test_the_cap_is_in_the_organization_currency(runtime: Runtime) -> None:
    account = await open_org(runtime, currency="USD")
    await runtime.spend_caps.set(account.organization, 100)
    assert (await consume(runtime, account.organization, 1033, "a")).status == "accepted"
    assert (await consume(runtime, account.organization, 1, "b")).status == "rejected"
    status = await runtime.spend_caps.status(account.organization)
    assert (status.spent.amount_minor, status.spent.currency) == (99, "USD")


async def test_without_a_cap_overage_is_not_refused(runtime: Runtime) -> None:
    account = await open_org(runtime)
    assert (await consume(runtime, account.organization, 5000, "a")).status == "accepted"


async def test_a_top_up_is_drawn_before_overage(runtime: Runtime) -> None:
    account = await open_org(runtime)
    await runtime.spend_caps.set(account.organization, 100)
    await runtime.topups.purchase(account.organization, "small", "buy-1")
    assert (await consume(runtime, account.organization, 1600, "a")).status == "accepted"
    assert (await consume(runtime, account.organization, 1, "b")).status == "rejected"
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert (meter.used, meter.drawn, meter.overage) == (1600, 500, 100)


async def test_the_cap_is_never_passed_under_concurrency(runtime: Runtime) -> None:
    account = await open_org(runtime)
    await runtime.spend_caps.set(account.organization, 250)
    await consume(runtime, account.organization, 990, "start")

    async def one(index: int) -> int:
        decision = await consume(runtime, account.organization, 9, f"k{index}")
        return decision.requested if decision.status == "accepted" else 0

    accepted = sum(await asyncio.gather(*(one(i) for i in range(60))))
    used = 990 + accepted
    assert used <= 1250 and 1250 - used < 9
    status = await runtime.spend_caps.status(account.organization)
    assert status.spent.amount_minor == used - 1000 <= 250


async def test_set_spend_cap_in_graphql(runtime: Runtime) -> None:
    metered = await open_org(runtime)
    flat = await open_org(runtime, plan="flat")
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
        key = await member_key(runtime, metered, Role.BILLING)
        answer = await graphql(client, key, SPEND_CAP, {"amount": 5000})
        assert answer["data"]["setSpendCap"] == {
            "__typename": "SpendCapSet",
            "spendCap": {
                "cap": {"amountMinor": 5000, "currency": "EUR", "formatted": "€50.00"},
                "spent": {"amountMinor": 0, "formatted": "€0.00"},
            },
        }
        await consume(runtime, metered.organization, 1250, "over")
        page = await graphql(client, key, PAGE)
        assert page["data"]["organization"]["spendCap"] == {
            "cap": {"amountMinor": 5000},
            "spent": {"amountMinor": 250, "currency": "EUR"},
        }
        cleared = await graphql(client, key, SPEND_CAP, {"amount": None})
        assert cleared["data"]["setSpendCap"]["spendCap"]["cap"] is None
        member = await member_key(runtime, metered, Role.MEMBER)
        assert "errors" in await graphql(client, member, SPEND_CAP, {"amount": 1})

        flat_key = await member_key(runtime, flat, Role.OWNER)
        refused = await graphql(client, flat_key, SPEND_CAP, {"amount": 5000})
        assert refused["data"]["setSpendCap"]["__typename"] == "InvalidInputError"
        assert refused["data"]["setSpendCap"]["field"] == "amount"
    with pytest.raises(InvalidInput):
        await runtime.spend_caps.set(metered.organization, -1)
