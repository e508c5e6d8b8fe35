"""The Stripe provider with the real SDK: against localstripe where it can serve, and
against a recording client answering Stripe-shaped payloads where it cannot
(proration_behavior, billing_portal.Session, invoice numbers and URLs)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select
from sqlmodel import col

from billing import repository
from billing.accounts import OpenedAccount, open_account
from billing.catalog import Catalog
from billing.models import PlanChange
from billing.provider import BillingProvider
from billing.stripe.events import mirror_invoice
from billing.stripe.provider import StripeProvider
from core.clock import FrozenClock
from core.config import Settings
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.billing.stripe.support import (
    RecordingClient,
    engine_of,
    invoice_object,
    stripe_plans,
    subscription_object,
)
from tests.graph.test_plan_change import CHANGE, PREVIEW, counts
from tests.support import free_port, graphql

pytestmark = pytest.mark.anyio

API_KEY = "sk_test_tally"
PORTAL = """mutation { createBillingPortalSession(returnUrl: "https://app.example/org") {
  __typename ... on BillingPortalSession { url } ... on Error { code message } } }"""


@pytest.fixture(scope="module")
def plans_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stripe_plans(tmp_path_factory.mktemp("plans"))


@pytest.fixture(scope="module")
def stripe_catalog(localstripe: str, plans_path: Path) -> Iterator[Catalog]:
    """The catalog, with a localstripe Plan for each plan's stripe_price (created once per
    localstripe, as this fixture runs again for each database)."""
    catalog = Catalog.load(plans_path)
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": localstripe}, max_network_retries=0
    )
    existing = {plan.id for plan in client.v1.plans.list({"limit": 100}).data}
    for plan in catalog:
        if plan.stripe_price in existing:
            continue
        product = client.v1.products.create({"name": plan.name})
        client.v1.plans.create(
            {"id": plan.stripe_price or "", "amount": plan.price_monthly.amount_minor,
             "currency": "eur", "interval": "month", "product": product.id}
        )  # fmt: skip
    yield catalog


Start = Callable[[BillingProvider], Awaitable[tuple[Runtime, OpenedAccount]]]


@pytest.fixture
async def start(database_url: str, plans_path: Path, clock: FrozenClock) -> AsyncIterator[Start]:
    """Starts a runtime on a provider with one organization (Ecommerce Enterprise); every
    runtime started is disposed at the end of the test."""
    runtimes: list[Runtime] = []

    async def start(provider: BillingProvider) -> tuple[Runtime, OpenedAccount]:
        settings = Settings(database_url=database_url, plans_path=plans_path, billing="stripe")
        runtime = build_runtime(settings, clock, provider=provider)
        runtimes.append(runtime)
        async with runtime.db.write() as session:
            account = await open_account(
                session, runtime.engine, runtime.catalog, name="Stripe Org",
                plan_id="ecommerce-enterprise",
                owner_email=f"o-{uuid.uuid4().hex[:6]}@example.com", anchor_day=1,
            )  # fmt: skip
        return runtime, account

    yield start
    for runtime in runtimes:
        await runtime.db.dispose()


def client_for(runtime: Runtime) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(runtime))
    return httpx.AsyncClient(transport=transport, base_url="http://tally.test")


def on_localstripe(catalog: Catalog, clock: FrozenClock, localstripe: str) -> StripeProvider:
    """A provider on localstripe, which knows Plans rather than Prices."""
    return StripeProvider(
        API_KEY, catalog, engine_of(catalog, clock), api_base=localstripe, price_field="plan",
        max_network_retries=0,
    )  # fmt: skip


def unreachable(catalog: Catalog, clock: FrozenClock) -> StripeProvider:
    """A provider whose Stripe is a port nothing listens on."""
    return StripeProvider(
        API_KEY, catalog, engine_of(catalog, clock), api_base=f"http://127.0.0.1:{free_port()}",
        max_network_retries=0,
    )  # fmt: skip


def recorded(plans_path: Path, clock: FrozenClock) -> tuple[RecordingClient, StripeProvider]:
    """A provider whose Stripe is `stripe_api()`, every request recorded."""
    recorder = RecordingClient(stripe_api())
    catalog = Catalog.load(plans_path)
    return recorder, StripeProvider(
        API_KEY, catalog, engine_of(catalog, clock), http_client=recorder
    )


async def link_to_stripe(
    runtime: Runtime,
    account: OpenedAccount,
    customer: str = "cus_QXg1o8vcGmoR32",
    reference: str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
) -> None:
    """Give the organization a Stripe customer and subscription (by default those
    `stripe_api()` knows)."""
    async with runtime.db.write() as session:
        subscription = await repository.get_subscription(session, account.organization.id)
        assert subscription is not None
        subscription.customer_ref = customer
        subscription.subscription_ref = reference
        await repository.add(session, subscription)


def add_card(sdk: stripe.StripeClient, customer: str) -> None:
    """The test card 4242 as the customer's default payment method."""
    card = sdk.v1.payment_methods.create(
        {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                  "exp_year": 2030, "cvc": "123"}}
    )  # fmt: skip
    sdk.v1.payment_methods.attach(card.id, {"customer": customer})
    sdk.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})


async def test_a_customer_is_created_and_its_invoices_mirror_on_localstripe(
    start: Start, clock: FrozenClock, localstripe: str, stripe_catalog: Catalog
) -> None:
    provider = on_localstripe(stripe_catalog, clock, localstripe)
    runtime, account = await start(provider)
    sdk = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe}, max_network_retries=0)
    organization = account.organization
    customer = await provider.create_customer(organization)
    add_card(sdk, customer)
    sdk.v1.subscriptions.create(
        {"customer": customer, "items": [{"plan": "plan_ecommerce-enterprise"}]}
    )
    [invoice] = sdk.v1.invoices.list({"customer": customer}).data
    async with runtime.db.write() as session:
        mirrored, applied = await mirror_invoice(
            session, organization.id, invoice.to_dict(), clock.now(), clock
        )
        assert applied and mirrored.total_minor == 189_000 and mirrored.currency == "EUR"
    assert sdk.v1.customers.retrieve(customer)["metadata"]["tally_organization"] == (
        organization.id
    )


async def test_a_change_stripe_refuses_leaves_nothing_changed_locally(
    start: Start, clock: FrozenClock, localstripe: str, stripe_catalog: Catalog
) -> None:
    provider = on_localstripe(stripe_catalog, clock, localstripe)
    runtime, account = await start(provider)
    sdk = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe}, max_network_retries=0)
    customer = await provider.create_customer(account.organization)
    add_card(sdk, customer)
    remote = sdk.v1.subscriptions.create(
        {"customer": customer, "items": [{"plan": "plan_ecommerce-enterprise"}]}
    )
    await link_to_stripe(runtime, account, customer, remote.id)
    async with client_for(runtime) as client:
        body = await graphql(client, account.owner_api_key, CHANGE, {"plan": "scale"})
        portal = await graphql(client, account.owner_api_key, PORTAL)
    result = body["data"]["changePlan"]
    assert result["__typename"] == "ProviderFailedError", result
    assert result["message"].startswith("Stripe: ")
    assert portal["data"]["createBillingPortalSession"]["__typename"] == "ProviderFailedError"
    assert await counts(runtime, account.organization.id) == (0, 0, "ecommerce-enterprise")
    async with runtime.db.read() as session:
        mine = col(PlanChange.organization_id) == account.organization.id
        [change] = (await session.execute(select(PlanChange).where(mine))).scalars().all()
    assert change.status == "failed" and change.provider_key is not None


async def test_a_stopped_server_leaves_nothing_changed(
    start: Start, clock: FrozenClock, stripe_catalog: Catalog
) -> None:
    provider = unreachable(stripe_catalog, clock)
    runtime, account = await start(provider)
    await link_to_stripe(runtime, account)
    async with client_for(runtime) as client:
        for timing in ("NOW", "PERIOD_END"):
            body = await graphql(
                client, account.owner_api_key, CHANGE, {"plan": "scale", "timing": timing}
            )
            assert body["data"]["changePlan"]["__typename"] == "ProviderFailedError"
    assert await counts(runtime, account.organization.id) == (0, 0, "ecommerce-enterprise")


def stripe_api() -> Any:
    """Answers as Stripe does for a subscription update with proration, an invoice and a
    portal session (shapes from fixtures3.json)."""
    invoice = invoice_object(
        "cus_QXg1o8vcGmoR32", status="open", number="467CD393-0357",
        invoice_pdf="https://pay.stripe.com/invoice/acct_1/test_1/pdf",
        hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_1",
    )  # fmt: skip

    def respond(method: str, path: str, form: Mapping[str, list[str]]) -> tuple[int, Any]:
        if path == "/v1/subscriptions/sub_1Pgc6rB7WZ01zgkWNy0Cn5nw" and method == "GET":
            return 200, subscription_object("cus_QXg1o8vcGmoR32")
        if path == "/v1/subscriptions/sub_1Pgc6rB7WZ01zgkWNy0Cn5nw":
            now = form.get("proration_behavior") == ["always_invoice"]
            return 200, subscription_object(
                "cus_QXg1o8vcGmoR32", latest_invoice=invoice["id"] if now else None
            )
        if path == f"/v1/invoices/{invoice['id']}":
            return 200, invoice
        if path == "/v1/invoices/create_preview":
            lines = [
                {"id": "il_unused", "object": "line_item", "amount": -100612, "currency": "eur",
                 "description": "Unused time on Ecommerce Enterprise after 15 Mar 2026",
                 "proration": True},
                {"id": "il_remaining", "object": "line_item", "amount": 260845, "currency": "eur",
                 "description": "Remaining time on Scale after 15 Mar 2026", "proration": True},
            ]  # fmt: skip
            return 200, invoice_object(
                "cus_QXg1o8vcGmoR32", id="upcoming_in_1Pgc6t", amount_due=160233,
                lines={"object": "list", "data": lines},
            )  # fmt: skip
        if path == "/v1/billing_portal/sessions":
            return 200, {"id": "bps_1Pgc7HB7WZ01zgkWNs8s9Auh", "object": "billing_portal.session",
                         "customer": form["customer"][0], "return_url": form["return_url"][0],
                         "url": "https://billing.stripe.com/p/session/test_YWNjdF8x"}  # fmt: skip
        return 404, {"error": {"type": "invalid_request_error", "message": f"no {path}"}}

    return respond


async def test_an_upgrade_prorates_in_stripe_and_mirrors_its_invoice(
    start: Start, plans_path: Path, clock: FrozenClock
) -> None:
    recorder, provider = recorded(plans_path, clock)
    runtime, account = await start(provider)
    await link_to_stripe(runtime, account)
    async with client_for(runtime) as client:
        variables = {"plan": "scale", "key": "up-1"}
        body = await graphql(client, account.owner_api_key, CHANGE, variables)
        downgrade = await graphql(client, account.owner_api_key, CHANGE, {"plan": "growth"})
        portal = await graphql(client, account.owner_api_key, PORTAL)
    result = body["data"]["changePlan"]
    assert result["invoice"] == {
        "id": result["invoice"]["id"], "number": "467CD393-0357",
        "amount": {"amountMinor": 192251},
        "pdfUrl": "https://pay.stripe.com/invoice/acct_1/test_1/pdf",
        "hostedUrl": "https://invoice.stripe.com/i/acct_1/test_1",
    }  # fmt: skip
    assert downgrade["data"]["changePlan"]["subscription"]["pendingPlan"] == {"id": "growth"}
    assert portal["data"]["createBillingPortalSession"] == {
        "__typename": "BillingPortalSession",
        "url": "https://billing.stripe.com/p/session/test_YWNjdF8x",
    }
    updates = [r for r in recorder.requests if r[0] == "POST" and "/subscriptions/" in r[1]]
    upgrade, scheduled = updates
    assert upgrade[2]["proration_behavior"] == ["always_invoice"]
    assert upgrade[2]["items[0][price]"] == ["plan_scale"]
    assert upgrade[2]["items[0][id]"] == ["si_QXhVnC2h0Jczwc"]
    assert upgrade[2]["metadata[tally_plan]"] == ["scale"]
    assert upgrade[3]["Idempotency-Key"].startswith("tally-change-")
    assert scheduled[2]["proration_behavior"] == ["none"]
    assert scheduled[2]["metadata[tally_pending_plan]"] == ["growth"]
    assert await counts(runtime, account.organization.id) == (1, 2, "scale")


async def test_the_preview_of_an_upgrade_comes_from_stripes_invoice_preview(
    start: Start, plans_path: Path, clock: FrozenClock
) -> None:
    recorder, provider = recorded(plans_path, clock)
    runtime, account = await start(provider)
    async with client_for(runtime) as client:
        before = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "scale"})
        calls_before = list(recorder.requests)
        await link_to_stripe(runtime, account)
        body = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "scale"})
    own = before["data"]["previewPlanChange"]
    assert own["amountDueNow"] == {"amountMinor": 160209, "formatted": "€1,602.09"}
    assert calls_before == [], "no Stripe subscription yet: Tally's own proration"
    preview = body["data"]["previewPlanChange"]
    assert (preview["credit"], preview["charge"], preview["amountDueNow"]) == (
        {"amountMinor": 100612, "formatted": "€1,006.12"},
        {"amountMinor": 260845, "formatted": "€2,608.45"},
        {"amountMinor": 160233, "formatted": "€1,602.33"},
    )
    [asked] = [r for r in recorder.requests if r[1] == "/v1/invoices/create_preview"]
    form = asked[2]
    assert form["subscription"] == ["sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"]
    assert form["subscription_details[proration_behavior]"] == ["always_invoice"]
    assert form["subscription_details[items][0][price]"] == ["plan_scale"]
    assert form["subscription_details[items][0][id]"] == ["si_QXhVnC2h0Jczwc"]
    assert form["subscription_details[proration_date]"] == [str(int(clock.now().timestamp()))]
    assert await counts(runtime, account.organization.id) == (0, 0, "ecommerce-enterprise")


async def test_a_preview_stripe_cannot_answer_falls_back_to_tallys_proration_with_a_warning(
    start: Start, clock: FrozenClock, stripe_catalog: Catalog
) -> None:
    provider = unreachable(stripe_catalog, clock)
    runtime, account = await start(provider)
    await link_to_stripe(runtime, account)
    async with client_for(runtime) as client:
        body = await graphql(client, account.owner_api_key, PREVIEW, {"plan": "scale"})
    preview = body["data"]["previewPlanChange"]
    assert preview["amountDueNow"] == {"amountMinor": 160209, "formatted": "€1,602.09"}
    assert preview["warnings"][-1].startswith("the billing provider's preview is unavailable")
