"""A Stripe organization from its opening to its second paid period with overage, every
request's parameters checked against a strict Stripe; a crash between Stripe's success
and the local commit; undoing a scheduled change; stripe-sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from sqlmodel import col

from billing import repository
from billing.catalog import Catalog
from billing.closing import close_all_periods
from billing.models import OverageReport, PlanChange, PlanHistory
from billing.plan_change import provider_key
from billing.stripe.provider import StripeProvider
from billing.stripe.sync import stripe_sync
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.billing.stripe.fake import StrictStripe
from tests.billing.stripe.support import engine_of, stripe_plans
from tests.graph.test_plan_change import CHANGE
from tests.support import graphql

pytestmark = pytest.mark.anyio

CANCEL = """mutation { cancelScheduledChange {
  __typename ... on SubscriptionChanged { subscription { pendingPlan { id } } }
  ... on Error { code message } } }"""
CANCEL_AT_END = """mutation($cancel: Boolean!) { setCancelAtPeriodEnd(cancel: $cancel) {
  __typename ... on SubscriptionChanged { subscription { cancelAtPeriodEnd } }
  ... on Error { code message } } }"""
CHECKOUT = """mutation { createCheckoutSession(returnUrl: "https://app.example/org") {
  __typename ... on CheckoutSession { url } ... on Error { code message } } }"""


@pytest.fixture
def plans_path(tmp_path: Path) -> Path:
    return stripe_plans(tmp_path)


@pytest.fixture
def fake() -> StrictStripe:
    return StrictStripe()


def runtime_on(
    database_url: str, plans_path: Path, clock: FrozenClock, fake: StrictStripe, **more: Any
) -> Runtime:
    """A runtime billing through the strict fake Stripe (`more`: other settings)."""
    catalog = Catalog.load(plans_path)
    provider = StripeProvider(
        "sk_test_tally", catalog, engine_of(catalog, clock), http_client=fake.client
    )
    settings = Settings(database_url=database_url, plans_path=plans_path, billing="stripe", **more)
    return build_runtime(settings, clock, provider=provider)


@pytest.fixture
async def stripe_runtime(
    database_url: str, plans_path: Path, clock: FrozenClock, fake: StrictStripe
) -> AsyncIterator[Runtime]:
    runtime = runtime_on(database_url, plans_path, clock, fake)
    yield runtime
    await runtime.db.dispose()


def client_for(runtime: Runtime) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(runtime))
    return httpx.AsyncClient(transport=transport, base_url="http://tally.test")


def timestamp(at: datetime) -> str:
    return str(int(at.timestamp()))


async def changes_of(runtime: Runtime, organization_id: str) -> list[PlanChange]:
    async with runtime.db.read() as session:
        statement = select(PlanChange).where(col(PlanChange.organization_id) == organization_id)
        return list((await session.execute(statement)).scalars().all())


async def use_tokens(runtime: Runtime, organization_id: str, amount: int, key: str) -> None:
    async with runtime.db.write() as session:
        organization = await session.get(Organization, organization_id)
        assert organization is not None
        decision = await runtime.engine.consume(
            session, organization, "tokens", amount, idempotency_key=key
        )
    assert decision.allowed


async def test_from_opening_to_the_second_paid_period_with_overage(
    stripe_runtime: Runtime, fake: StrictStripe, clock: FrozenClock
) -> None:
    runtime = stripe_runtime
    opened = await runtime.accounts.open(
        name="Acme", plan_id="scale", owner_email="o@acme.example", anchor_day=1
    )
    assert opened.provider_error is None
    organization_id = opened.account.organization.id
    [customer] = fake.posts("/v1/customers")
    assert customer["name"] == ["Acme"]
    assert customer["metadata[tally_organization]"] == [organization_id]
    assert fake.keys("/v1/customers") == [f"tally-customer-{organization_id}"]
    [created] = fake.posts("/v1/subscriptions")
    assert created["customer"] == [fake.id("cus", 1)]
    assert created["items[0][price]"] == ["plan_scale"]
    assert created["billing_cycle_anchor"] == [timestamp(datetime(2026, 4, 1, tzinfo=UTC))]
    assert created["proration_behavior"] == ["create_prorations"]
    assert "trial_end" not in created
    assert fake.keys("/v1/subscriptions") == [f"tally-subscription-{organization_id}"]
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
    assert subscription is not None
    assert (subscription.customer_ref, subscription.subscription_ref) == (
        fake.id("cus", 1),
        fake.id("sub", 2),
    )

    limit = 600_000_000
    await use_tokens(runtime, organization_id, limit + 1_000_000, "march")
    clock.set(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))
    await close_all_periods(
        runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
    )
    await use_tokens(runtime, organization_id, limit + 2_500_001, "april")
    clock.set(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
    for _ in range(2):
        await close_all_periods(
            runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
        )
    items = fake.posts("/v1/invoiceitems")
    # 1,000,000 and 2,500,001 tokens past the limit at 0.000002 EUR: 2.00 and 5.000002 EUR
    assert [(i["amount"], i["currency"], i["subscription"], i["customer"]) for i in items] == [
        (["200"], ["eur"], [fake.id("sub", 2)], [fake.id("cus", 1)]),
        (["500"], ["eur"], [fake.id("sub", 2)], [fake.id("cus", 1)]),
    ]
    assert items[0]["description"] == [
        "AI Tokens over the plan's 600.0M: 1,000,000 tokens at 0.000002 EUR, "
        "1 March 2026 to 31 March 2026"
    ]
    assert fake.keys("/v1/invoiceitems") == [
        f"tally-overage-{organization_id}-2026-03-01-tokens",
        f"tally-overage-{organization_id}-2026-04-01-tokens",
    ]
    async with runtime.db.read() as session:
        statement = select(OverageReport).where(
            col(OverageReport.organization_id) == organization_id
        )
        reports = (await session.execute(statement)).scalars().all()
    assert [(r.quantity, r.amount_minor, r.status) for r in reports] == [
        (1_000_000, 200, "sent"),
        (2_500_001, 500, "sent"),
    ]


@pytest.fixture
def trial_plans(plans_path: Path) -> Path:
    """The Stripe plans with a 14-day trial on Growth."""
    text = plans_path.read_text(encoding="utf-8")
    growth = 'stripe_price = "plan_growth"\n'
    plans_path.write_text(text.replace(growth, growth + "trial_days = 14\n"), encoding="utf-8")
    return plans_path


async def test_a_trial_is_passed_to_stripe(
    database_url: str, trial_plans: Path, clock: FrozenClock, fake: StrictStripe
) -> None:
    runtime = runtime_on(database_url, trial_plans, clock, fake)
    try:
        opened = await runtime.accounts.open(
            name="Trial", plan_id="growth", owner_email="o@trial.example", anchor_day=1
        )
    finally:
        await runtime.db.dispose()
    [created] = fake.posts("/v1/subscriptions")
    trial_end = datetime(2026, 3, 29, 12, tzinfo=UTC)
    assert created["trial_end"] == [timestamp(trial_end)]
    assert created["billing_cycle_anchor"] == [timestamp(datetime(2026, 4, 1, tzinfo=UTC))]
    assert opened.provider_error is None


@pytest.fixture
def fail_applying_once() -> Iterator[list[int]]:
    """The local commit of an applied plan change fails once, as a crash after Stripe's
    success would (a real commit failure, raised by SQLAlchemy's before_commit)."""
    failures: list[int] = []

    def before_commit(session: Session) -> None:
        applied = [
            row for row in session.identity_map.values()
            if isinstance(row, PlanChange) and row.status == "applied"
        ]  # fmt: skip
        if applied and not failures:
            failures.append(1)
            raise RuntimeError("the database went away before the commit")

    event.listen(Session, "before_commit", before_commit)
    yield failures
    event.remove(Session, "before_commit", before_commit)


async def test_a_crash_between_stripe_and_the_commit_is_reconciled_by_the_same_key(
    stripe_runtime: Runtime, fake: StrictStripe, fail_applying_once: list[int]
) -> None:
    runtime = stripe_runtime
    opened = await runtime.accounts.open(
        name="Crash", plan_id="ecommerce-enterprise", owner_email="o@crash.example", anchor_day=1
    )
    organization_id = opened.account.organization.id
    variables = {"plan": "scale", "key": "upgrade-42"}
    async with client_for(runtime) as client:
        crashed = await graphql(client, opened.account.owner_api_key, CHANGE, variables)
        assert crashed["data"] is None and fail_applying_once == [1]
        body = await graphql(client, opened.account.owner_api_key, CHANGE, variables)
        again = await graphql(client, opened.account.owner_api_key, CHANGE, variables)
    assert body["data"]["changePlan"]["__typename"] == "PlanChanged", body
    assert again["data"]["changePlan"] == body["data"]["changePlan"]
    path = f"/v1/subscriptions/{fake.id('sub', 2)}"
    expected = provider_key(organization_id, "upgrade-42")
    assert fake.keys(path) == [expected, expected], "the retry reached the same change"
    [update] = fake.posts(path)
    assert update["items[0][price]"] == ["plan_scale"]
    assert update["proration_behavior"] == ["always_invoice"]
    async with runtime.db.read() as session:
        changes = await changes_of(runtime, organization_id)
        history = (
            (
                await session.execute(
                    select(PlanHistory).where(col(PlanHistory.organization_id) == organization_id)
                )
            )
            .scalars()
            .all()
        )
        organization = await session.get(Organization, organization_id)
    assert [(c.status, c.provider_key) for c in changes] == [("applied", expected)]
    # the change made at the opening's instant replaces its history row
    assert [(row.plan_id, row.change_id) for row in history] == [("scale", changes[0].id)]
    assert organization is not None and organization.plan_id == "scale"


async def test_a_scheduled_downgrade_can_be_undone_and_cancellation_set_and_unset(
    stripe_runtime: Runtime, fake: StrictStripe
) -> None:
    runtime = stripe_runtime
    opened = await runtime.accounts.open(
        name="Undo", plan_id="ecommerce-enterprise", owner_email="o@undo.example", anchor_day=1
    )
    key = opened.account.owner_api_key
    async with client_for(runtime) as client:
        down = await graphql(client, key, CHANGE, {"plan": "growth", "key": "down-1"})
        undone = await graphql(client, key, CANCEL)
        nothing = await graphql(client, key, CANCEL)
        await graphql(client, key, CHANGE, {"plan": "growth", "key": "down-2"})
        back = await graphql(client, key, CHANGE, {"plan": "ecommerce-enterprise"})
        unknown = await graphql(client, key, CHANGE, {"plan": "platinum"})
        cancel = await graphql(client, key, CANCEL_AT_END, {"cancel": True})
        keep = await graphql(client, key, CANCEL_AT_END, {"cancel": False})
        checkout = await graphql(client, key, CHECKOUT)
    assert down["data"]["changePlan"]["subscription"]["pendingPlan"] == {"id": "growth"}
    assert undone["data"]["cancelScheduledChange"] == {
        "__typename": "SubscriptionChanged", "subscription": {"pendingPlan": None}
    }  # fmt: skip
    assert nothing["data"]["cancelScheduledChange"]["code"] == "NOTHING_SCHEDULED"
    assert back["data"]["changePlan"]["subscription"]["pendingPlan"] is None
    message = unknown["data"]["changePlan"]["message"]
    assert "'platinum'" in message and "growth" in message and "scale" in message
    assert cancel["data"]["setCancelAtPeriodEnd"]["subscription"] == {"cancelAtPeriodEnd": True}
    assert keep["data"]["setCancelAtPeriodEnd"]["subscription"] == {"cancelAtPeriodEnd": False}
    answer = checkout["data"]["createCheckoutSession"]
    assert answer["__typename"] == "CheckoutSession"
    assert answer["url"].startswith("https://checkout.stripe.com/c/pay/cs_")
    [session] = fake.posts("/v1/checkout/sessions")
    assert session["mode"] == ["setup"] and session["currency"] == ["eur"]
    assert session["customer"] == [fake.id("cus", 1)]
    assert session["success_url"] == ["https://app.example/org"]
    updates = fake.posts(f"/v1/subscriptions/{fake.id('sub', 2)}")
    metadata = [
        (u.get("metadata[tally_plan]"), u.get("metadata[tally_pending_plan]")) for u in updates
    ]
    assert metadata[:4] == [
        (["ecommerce-enterprise"], ["growth"]),
        (["ecommerce-enterprise"], [""]),
        (["ecommerce-enterprise"], ["growth"]),
        (["ecommerce-enterprise"], [""]),
    ]
    assert [u.get("cancel_at_period_end") for u in updates[4:]] == [["true"], ["false"]]
    changes = await changes_of(runtime, opened.account.organization.id)
    assert [change.status for change in changes] == ["canceled", "canceled"]


async def test_stripe_sync_creates_what_is_missing_once(
    stripe_runtime: Runtime, fake: StrictStripe, open_org: Any
) -> None:
    runtime = stripe_runtime
    account = await open_org()
    provider = runtime.provider
    assert isinstance(provider, StripeProvider)
    mine = account.organization.id

    async def sync(apply: bool) -> list[tuple[str, str]]:
        assert isinstance(provider, StripeProvider)
        lines = await stripe_sync(runtime.db, runtime.engine, runtime.catalog, provider, apply)
        return [(line.state, line.detail) for line in lines if line.organization_id == mine]

    assert await sync(False) == [("missing", "no Stripe customer")]
    assert await sync(True) == [("created", "no Stripe customer: subscribed now")]
    [(state, _)] = await sync(True)
    assert state in ("in_sync", "drift")
    # The database is shared with other tests' organizations, which stripe-sync subscribes too.
    created = [
        form
        for form in fake.posts("/v1/subscriptions")
        if form["metadata[tally_organization]"] == [mine]
    ]
    assert len(created) == 1
    assert fake.keys("/v1/subscriptions").count(f"tally-subscription-{mine}") == 1


async def test_a_top_up_is_one_stripe_invoice_paid_at_once_and_mirrored(
    stripe_runtime: Runtime, fake: StrictStripe
) -> None:
    runtime = stripe_runtime
    opened = await runtime.accounts.open(
        name="Topped", plan_id="growth", owner_email="o@topped.example", anchor_day=1
    )
    organization = opened.account.organization
    bought = await runtime.topups.purchase(organization, "tokens-50m", "pack-1")
    again = await runtime.topups.purchase(organization, "tokens-50m", "pack-1")
    assert (again.id, again.status) == (bought.id, "done")
    source = f"tally-topup:{bought.id}"
    [invoice] = fake.posts("/v1/invoices")
    assert invoice["customer"] == [fake.id("cus", 1)]
    assert invoice["currency"] == ["eur"]
    assert invoice["pending_invoice_items_behavior"] == ["exclude"]
    assert invoice["collection_method"] == ["charge_automatically"]
    [item] = fake.posts("/v1/invoiceitems")
    assert (item["amount"], item["currency"]) == (["4900"], ["eur"])
    assert item["invoice"] == [bought.provider_ref]
    assert fake.keys("/v1/invoices") == [f"{source}-invoice"]
    assert fake.keys("/v1/invoiceitems") == [f"{source}-item"]
    assert fake.keys(f"/v1/invoices/{bought.provider_ref}/pay") == [f"{source}-pay"]
    assert fake.invoices[str(bought.provider_ref)]["status"] == "paid"
    async with runtime.db.read() as session:
        [mirrored] = await repository.list_invoices(session, organization.id, 10)
        usage = await runtime.engine.usage(session, organization)
    assert (mirrored.provider_ref, mirrored.status, mirrored.total_minor) == (
        bought.provider_ref,
        "paid",
        4900,
    )
    assert bought.invoice_id == mirrored.id
    [tokens] = [meter for meter in usage.resources if meter.resource.key == "tokens"]
    assert (tokens.extra_left, tokens.total_limit) == (50_000_000, 80_000_000)
