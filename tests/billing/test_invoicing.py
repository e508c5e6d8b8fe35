"""Local invoices: period close, numbering (also concurrent), overage, credit, tax, the PDF."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime

import httpx
import pytest
from pypdf import PdfReader

from billing import repository
from billing.closing import ClosedPeriod, close_all_periods, close_due_periods
from billing.local.documents import InvoiceLine
from billing.local.provider import LocalProvider
from billing.models import Invoice
from billing.org_settings import update_settings
from billing.provider import Timing
from core.clock import FrozenClock
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

APRIL_1 = datetime(2026, 4, 1, tzinfo=UTC)
INVOICES = """{ organization { invoices {
  nodes { number date amount { amountMinor } pdfUrl hostedUrl } } } }"""


async def close(runtime: Runtime, organization_id: str) -> list[ClosedPeriod]:
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, organization_id)
        subscription = await repository.lock_subscription(session, organization_id)
        assert organization is not None and subscription is not None
        return await close_due_periods(
            session,
            runtime.engine,
            runtime.catalog,
            runtime.provider,
            organization,
            subscription,
            runtime.clock.now(),
        )


async def invoices(runtime: Runtime, organization_id: str) -> list[Invoice]:
    async with runtime.db.read() as session:
        return list(await repository.list_invoices(session, organization_id, 100))


async def test_closing_a_period_twice_yields_one_invoice(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org()
    assert await close(runtime, account.organization.id) == []
    clock.set(APRIL_1)
    closed = await close(runtime, account.organization.id)
    assert [c.period.start.date() for c in closed] == [date(2026, 3, 1)]
    assert await close(runtime, account.organization.id) == []
    await close_all_periods(
        runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
    )
    [invoice] = await invoices(runtime, account.organization.id)
    assert invoice.number == f"{account.organization.id[:8].upper()}-0001"
    assert invoice.issued_on == date(2026, 4, 1)
    assert (invoice.period_start, invoice.period_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert invoice.document is not None
    assert invoice.document["lines"] == [
        [
            "Ecommerce Enterprise plan, 1 March 2026 to 31 March 2026 (from 15 March 2026)",
            1,
            100_597,
            100_597,
        ]
    ]
    assert invoice.total_minor == 120_716


async def test_numbers_have_no_gaps_under_concurrent_issuing(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    account = await open_org()
    provider = runtime.provider
    assert isinstance(provider, LocalProvider)

    async def issue(source: str) -> None:
        async with runtime.db.write() as session:
            await provider.invoicer.issue(
                session,
                account.organization,
                source=source,
                issued_on=date(2026, 3, 15),
                lines=[InvoiceLine.of("Work", 1, 1_000)],
                currency="EUR",
            )

    sources = [f"s{i % 6}" for i in range(18)]
    await asyncio.gather(*(issue(source) for source in sources))
    numbers = sorted(invoice.number for invoice in await invoices(runtime, account.organization.id))
    prefix = account.organization.id[:8].upper()
    assert numbers == [f"{prefix}-{n:04d}" for n in range(1, 7)]


async def test_months_are_closed_in_order_and_a_pending_downgrade_applies_at_the_end(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, account.organization.id)
        assert organization is not None
        await runtime.plan_changes.change(session, organization, "growth", Timing.AUTO)
    clock.set(datetime(2026, 5, 20, tzinfo=UTC))
    closed = await close(runtime, account.organization.id)
    assert [(c.period.start.month, c.plan_id, c.switched_plan) for c in closed] == [
        (3, "growth", True),
        (4, "growth", False),
    ]
    april, march = await invoices(runtime, account.organization.id)
    assert march.document and "Ecommerce Enterprise plan" in march.document["lines"][0][0]
    assert april.document and april.document["lines"] == [
        ["Growth plan, 1 April 2026 to 30 April 2026", 1, 19_000, 19_000]
    ]
    assert april.number.endswith("-0002")


async def test_overage_and_carried_credit_are_billed_at_close(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="scale")
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 650_000_000, idempotency_key="burst"
        )
        organization = await repository.lock_organization(session, account.organization.id)
        assert organization is not None
        await runtime.plan_changes.change(session, organization, "ecommerce-enterprise", Timing.NOW)
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, account.organization.id)
        assert organization is not None
        await runtime.plan_changes.change(session, organization, "scale", Timing.NOW)
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    period, change = await invoices(runtime, account.organization.id)
    assert (change.source or "").startswith("change:") and change.issued_on == date(2026, 3, 15)
    assert period.source == "period:2026-03-01" and period.document is not None
    assert period.document["lines"] == [
        ["Scale plan, 1 March 2026 to 31 March 2026 (from 15 March 2026)", 1, 260_806, 260_806],
        ["AI Tokens over the plan's 600.0M: 50,000,000 tokens at 0.000002 EUR", 1, 10_000, 10_000],
        ["Credit balance applied", 1, -160_209, -160_209],
    ]
    assert period.total_minor == 132_716


async def test_invoices_carry_the_buyer_and_the_reverse_charge_and_render_as_pdf(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Acme Handel")
    async with runtime.db.write() as session:
        await update_settings(
            session,
            account.organization.id,
            {"legal_name": "Acme Handel GmbH", "address_line1": "Hauptstrasse 1",
             "postal_code": "10115", "city": "Berlin", "country": "DE", "vat_id": "DE123456789",
             "billing_email": "ap@acme.example"},
            clock.now(),
        )  # fmt: skip
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    body = await graphql(client, account.owner_api_key, INVOICES)
    [node] = body["data"]["organization"]["invoices"]["nodes"]
    assert node["amount"] == {"amountMinor": 100_597}
    response = await client.get(node["pdfUrl"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    print("invoice PDF text:\n" + text)
    for expected in (
        node["number"], "1 April 2026", "Tally", "Acme Handel GmbH", "Hauptstrasse 1",
        "VAT ID: DE123456789", "Ecommerce Enterprise plan", "Billing period 1 March 2026",
        "Total 1,005.97 EUR", "VAT reverse charge", "BILL TO",
    ):  # fmt: skip
        assert expected in text, expected
    html = await client.get(node["hostedUrl"])
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert node["number"] in html.text and "€1,005.97" in html.text
