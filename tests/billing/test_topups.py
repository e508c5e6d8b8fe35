"""Top-ups: packs in the plans file, bought once per idempotency key with a local invoice,
their allowance drawn past the plan's limit and shown on the meter."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from billing import topup_repository
from billing.catalog import Catalog, CatalogError
from billing.invoicing import stored_document
from billing.models import Invoice
from core.errors import Conflict, NotFound
from core.orgs import Role
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql, member_key, write_plans

pytestmark = pytest.mark.anyio

PLANS = """
[plans.small]
name = "Small"
price_monthly = { EUR = "10.00", USD = "11.00" }
[plans.small.limits]
tokens = 1000
agents = 2

[topups.tokens-500]
name = "500 tokens"
tokens = 500
price = { EUR = "4.00", USD = "5.00" }

[topups.tokens-2k]
tokens = 2000
price = "12.00"
currency = "EUR"
"""

PURCHASE = """
mutation($topUp: String!, $key: String!) {
  purchaseTopUp(topUpId: $topUp, idempotencyKey: $key) {
    __typename
    ... on TopUpPurchased { purchase { id topUpId resource amount status invoiceId
                                       price { amountMinor currency formatted } } }
    ... on NotFoundError { code message }
    ... on InvalidInputError { code message field }
  }
}
"""
PAGE = """{ organization {
  topUps { id name resource amount price { amountMinor currency } }
  usage { tokens { used limit planLimit extra remaining display } }
} }"""


@pytest.fixture
def plans() -> str:
    return PLANS


def test_top_ups_are_read_from_the_plans_file(tmp_path: Path) -> None:
    catalog = Catalog.load(write_plans(tmp_path / "plans.toml", PLANS))
    pack = catalog.topups["tokens-500"]
    assert (pack.name, pack.resource, pack.amount) == ("500 tokens", "tokens", 500)
    assert pack.price("USD").amount_minor == 500
    assert catalog.topups["tokens-2k"].price("EUR").amount_minor == 1200
    with pytest.raises(Exception, match="not sold in USD"):
        catalog.topups["tokens-2k"].price("USD")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('price = "4.00"\ncurrency = "EUR"', "exactly one resource"),
        ('tokens = 0\nprice = "4.00"\ncurrency = "EUR"', "positive whole number"),
        ('tokens = 5\nprice = "4.00"', "needs currency"),
        ('tokens = 5\nprice = { EUR = "-1.00" }', "must be a positive"),
        ('tokens = 5\nseats = 3\nprice = { EUR = "1.00" }', "exactly one resource"),
    ],
)
def test_a_malformed_top_up_fails_at_load(tmp_path: Path, table: str, message: str) -> None:
    text = PLANS.split("[topups.")[0] + f"[topups.bad]\n{table}\n"
    with pytest.raises(CatalogError, match=message):
        Catalog.load(write_plans(tmp_path / "plans.toml", text))


def test_a_top_up_of_an_unknown_resource_or_a_gauge_fails_at_start(tmp_path: Path) -> None:
    from core.config import Settings
    from tally.runtime import build_runtime

    for resource, message in (("voice", "no installed plugin"), ("agents", "a gauge")):
        text = PLANS + f'\n[topups.odd]\n{resource} = 5\nprice = {{ EUR = "1.00" }}\n'
        path = write_plans(tmp_path / f"{resource}.toml", text)
        with pytest.raises(CatalogError, match=message):
            build_runtime(Settings(database_url="sqlite:///unused.db", plans_path=path))


async def test_a_purchase_is_invoiced_once_and_raises_the_allowance(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    account = await open_org(plan="small")
    organization = account.organization
    bought = await runtime.topups.purchase(organization, "tokens-500", "buy-1")
    again = await runtime.topups.purchase(organization, "tokens-500", "buy-1")
    assert (bought.status, bought.id) == ("done", again.id)
    async with runtime.db.read() as session:
        invoice = await session.get(Invoice, bought.invoice_id)
        meter = (await runtime.engine.usage(session, organization)).get("tokens")
    assert invoice is not None and invoice.source == f"topup:{bought.id}"
    assert invoice.currency == "EUR"
    lines = stored_document(invoice).lines
    assert [(line.description, line.amount_minor) for line in lines] == [
        ("Top-up 500 tokens: 500 tokens", 400)
    ]
    assert (meter.total_limit, meter.extra_left) == (1500, 500)
    with pytest.raises(Conflict, match="already bought"):
        await runtime.topups.purchase(organization, "tokens-2k", "buy-1")
    with pytest.raises(NotFound, match="tokens-500, tokens-2k"):
        await runtime.topups.purchase(organization, "nope", "buy-2")


async def test_a_pending_purchase_is_completed_by_its_replay(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    account = await open_org(plan="small")
    organization = account.organization
    async with runtime.db.write() as session:
        await topup_repository.insert_purchase(
            session,
            {
                "id": "p" * 32,
                "organization_id": organization.id,
                "topup_id": "tokens-500",
                "resource": "tokens",
                "amount": 500,
                "price_minor": 400,
                "currency": "EUR",
                "idempotency_key": "crashed",
                "status": "pending",
                "purchased_at": runtime.clock.now(),
            },
        )
    done = await runtime.topups.purchase(organization, "tokens-500", "crashed")
    assert (done.id, done.status) == ("p" * 32, "done")
    await runtime.topups.purchase(organization, "tokens-500", "crashed")
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, organization)).get("tokens")
    assert meter.extra_left == 500


async def test_purchase_top_up_in_graphql_and_the_meter_on_the_page(
    runtime: Runtime, open_org: OpenOrg, client: httpx.AsyncClient
) -> None:
    account = await open_org(plan="small")
    key = await member_key(runtime, account, Role.BILLING)
    answer = await graphql(client, key, PURCHASE, {"topUp": "tokens-500", "key": "k1"})
    purchase = answer["data"]["purchaseTopUp"]["purchase"]
    assert (purchase["topUpId"], purchase["amount"], purchase["status"]) == (
        "tokens-500",
        500,
        "done",
    )
    assert purchase["price"] == {"amountMinor": 400, "currency": "EUR", "formatted": "€4.00"}
    assert purchase["invoiceId"]
    unknown = await graphql(client, key, PURCHASE, {"topUp": "nope", "key": "k2"})
    assert unknown["data"]["purchaseTopUp"]["code"] == "TOPUP_NOT_FOUND"
    member = await member_key(runtime, account, Role.MEMBER)
    assert "errors" in await graphql(client, member, PURCHASE, {"topUp": "tokens-500", "key": "k3"})

    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 1200, idempotency_key="big"
        )
    page = (await graphql(client, key, PAGE))["data"]["organization"]
    assert page["topUps"][0] == {
        "id": "tokens-500",
        "name": "500 tokens",
        "resource": "tokens",
        "amount": 500,
        "price": {"amountMinor": 400, "currency": "EUR"},
    }
    assert page["usage"]["tokens"] == {
        "used": 1200,
        "limit": 1500,
        "planLimit": 1000,
        "extra": 500,
        "remaining": 300,
        "display": "1.2K / 1.5K",
    }
