"""Local invoices: period close, the seller's numbering (also concurrent, across
organizations), due dates, overage, credit notes, tax, the PDF."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from billing import repository
from billing.accounts import OpenedAccount
from billing.closing import ClosedPeriod, close_all_periods, close_due_periods
from billing.invoicing import stored_document
from billing.local.documents import InvoiceLine
from billing.local.provider import LocalProvider
from billing.models import Invoice
from billing.org_settings import update_settings
from billing.provider import Timing
from core.clock import FrozenClock
from core.config import Settings
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

APRIL_1 = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
"""March's period closes once its grace window (TALLY_USAGE_GRACE_SECONDS, 1 hour) has passed."""
INVOICES = """{ organization { invoices {
  nodes { number date amount { amountMinor } pdfUrl hostedUrl kind dueOn status
          creditedInvoiceId } } } }"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """A seller with its whole identity; each test numbers in a series of its own, so numbers
    are exact from 1."""
    return Settings(
        database_url=database_url,
        invoice_prefix=f"T{uuid.uuid4().hex[:8].upper()}",
        seller_name="Tally SAS",
        seller_address=("1 rue de Rivoli", "75001 Paris"),
        seller_vat_id="FR23334175221",
        seller_legal_form="SAS au capital de 10 000 €",
        seller_registration="RCS Paris 333 417 522",
    )


def number(runtime: Runtime, sequence: int) -> str:
    return f"{runtime.settings.invoice_prefix}-2026-{sequence:06d}"


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
    assert invoice.number == number(runtime, 1)
    assert invoice.issued_on == date(2026, 4, 1)
    assert (invoice.kind, invoice.due_on, invoice.status) == ("invoice", date(2026, 5, 1), "open")
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
    first, second = await open_org(), await open_org()
    provider = runtime.provider
    assert isinstance(provider, LocalProvider)
    async with runtime.db.write() as session:
        old_style = Invoice(
            organization_id=first.organization.id,
            number=f"{first.organization.id[:8].upper()}-0001",
            issued_on=date(2026, 2, 28),
            total_minor=1_200,
            currency="EUR",
            status="paid",
            created_at=runtime.clock.now(),
            source="period:2026-02-01",
        )
        await repository.add(session, old_style)

    async def issue(account: OpenedAccount, source: str) -> None:
        async with runtime.db.write() as session:
            await provider.invoicer.issue(
                session,
                account.organization,
                source=source,
                issued_on=date(2026, 3, 15),
                lines=[InvoiceLine.of("Work", 1, 1_000)],
                currency="EUR",
            )

    tasks = [issue(first if i % 2 else second, f"s{i % 6}") for i in range(24)]
    await asyncio.gather(*tasks)
    issued = [
        *await invoices(runtime, first.organization.id),
        *await invoices(runtime, second.organization.id),
    ]
    numbers = sorted(invoice.number for invoice in issued)
    assert numbers == sorted([old_style.number, *(number(runtime, n) for n in range(1, 7))])


async def test_two_organizations_closing_at_once_share_one_sequence(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    accounts = [await open_org(name=f"Org {n}") for n in range(4)]
    clock.set(APRIL_1)
    await asyncio.gather(*(close(runtime, account.organization.id) for account in accounts))
    await asyncio.gather(*(close(runtime, account.organization.id) for account in accounts))
    issued = [invoice for a in accounts for invoice in await invoices(runtime, a.organization.id)]
    assert sorted(invoice.number for invoice in issued) == [number(runtime, n) for n in range(1, 5)]
    assert {invoice.organization_id for invoice in issued} == {
        account.organization.id for account in accounts
    }


async def test_months_are_closed_in_order_and_a_pending_downgrade_applies_at_the_end(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org()
    await runtime.billing.change_plan(account.organization.id, "growth", Timing.AUTO, None)
    clock.set(datetime(2026, 5, 20, tzinfo=UTC))
    closed = await close(runtime, account.organization.id)
    assert [(c.period.start.month, c.plan_id) for c in closed] == [(3, "growth"), (4, "growth")]
    april, march = await invoices(runtime, account.organization.id)
    assert march.document and "Ecommerce Enterprise plan" in march.document["lines"][0][0]
    assert april.document and april.document["lines"] == [
        ["Growth plan, 1 April 2026 to 30 April 2026", 1, 19_000, 19_000]
    ]
    assert (march.number, april.number) == (number(runtime, 1), number(runtime, 2))


async def test_overage_and_carried_credit_are_billed_at_close(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="scale")
    async with runtime.db.write() as session:
        await runtime.engine.consume(
            session, account.organization, "tokens", 650_000_000, idempotency_key="burst"
        )
    await runtime.billing.change_plan(
        account.organization.id, "ecommerce-enterprise", Timing.NOW, None
    )
    await runtime.billing.change_plan(account.organization.id, "scale", Timing.NOW, None)
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
             "postal_code": "10115", "city": "Berlin", "country": "DE", "vat_id": "DE136695976",
             "billing_email": "ap@acme.example"},
            clock.now(),
        )  # fmt: skip
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    body = await graphql(client, account.owner_api_key, INVOICES)
    [node] = body["data"]["organization"]["invoices"]["nodes"]
    assert node["amount"] == {"amountMinor": 100_597}
    assert (node["kind"], node["dueOn"], node["status"]) == ("invoice", "2026-05-01", "open")
    response = await client.get(node["pdfUrl"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    print("invoice PDF text:\n" + text)
    for expected in (
        node["number"], "1 April 2026", "Tally SAS", "SAS au capital de 10 000 EUR",
        "RCS Paris 333 417 522", "VAT ID: FR23334175221", "Acme Handel GmbH", "Hauptstrasse 1",
        "VAT ID: DE136695976", "Ecommerce Enterprise plan", "Billing period 1 March 2026",
        "Due date 1 May 2026", "Total (incl. VAT) 1,005.97 EUR", "VAT reverse charge",
        "BILL TO", "Payment terms: within 30 days", "Code de commerce",
    ):  # fmt: skip
        assert expected in text, expected
    html = await client.get(node["hostedUrl"])
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert node["number"] in html.text and "€1,005.97" in html.text


async def test_a_change_invoice_prints_one_period_in_its_header_and_its_lines(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    account = await open_org()
    await runtime.billing.change_plan(account.organization.id, "scale", Timing.NOW, "up")
    [change] = await invoices(runtime, account.organization.id)
    document = stored_document(change)
    assert (change.period_start, change.period_end) == (date(2026, 3, 15), date(2026, 3, 31))
    assert document.period == "15 March 2026 to 31 March 2026"
    assert [line.description for line in document.lines] == [
        "Scale plan, 15 March 2026 to 31 March 2026 (prorated)",
        "Unused time on Ecommerce Enterprise plan, 15 March 2026 to 31 March 2026",
    ]
    assert change.due_on == date(2026, 4, 14)


async def test_an_immediate_downgrade_issues_a_credit_note_against_the_last_invoice(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    [march] = await invoices(runtime, account.organization.id)
    assert (march.number, march.total_minor) == (number(runtime, 1), 120_716)
    clock.set(datetime(2026, 4, 15, 12, 0, tzinfo=UTC))
    outcome = await runtime.billing.change_plan(
        account.organization.id, "growth", Timing.NOW, "down"
    )
    assert outcome.changed.invoice is None
    note, _ = await invoices(runtime, account.organization.id)
    # April has 30 days; 15.5 of them remain: credit 1,890.00 x 31/60 = 976.50, charge
    # 190.00 x 31/60 = 98.17, net 878.33; VAT reversed at March's 20 %: 175.67 (half up).
    assert (note.kind, note.number, note.credited_invoice_id) == (
        "credit_note",
        number(runtime, 2),
        march.id,
    )
    assert (note.total_minor, note.status, note.due_on) == (-105_400, "issued", None)
    assert (note.period_start, note.period_end) == (date(2026, 4, 15), date(2026, 4, 30))
    document = stored_document(note)
    assert (document.subtotal_minor, document.tax_minor) == (-87_833, -17_567)
    assert document.credited_number == march.number and document.tax.rate_basis_points == 2000
    assert [(line.description, line.amount_minor) for line in document.lines] == [
        ("Unused time on Ecommerce Enterprise plan, 15 April 2026 to 30 April 2026", -97_650),
        ("Growth plan, 15 April 2026 to 30 April 2026 (prorated)", 9_817),
    ]
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, account.organization.id)
    assert subscription is not None and subscription.credit_minor == 0

    clock.set(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))
    await close(runtime, account.organization.id)
    april = (await invoices(runtime, account.organization.id))[0]
    assert april.number == number(runtime, 3) and april.document is not None
    assert not [line for line in april.document["lines"] if "Credit balance" in line[0]]

    body = await graphql(client, account.owner_api_key, INVOICES)
    nodes = body["data"]["organization"]["invoices"]["nodes"]
    [credit] = [node for node in nodes if node["kind"] == "credit_note"]
    assert credit["amount"] == {"amountMinor": -105_400}
    assert credit["creditedInvoiceId"] == march.id
    text = "\n".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO((await client.get(credit["pdfUrl"])).content)).pages
    )
    for expected in ("Credit note", f"Credits invoice {march.number}",
                     "Total (incl. VAT) -1,054.00 EUR"):  # fmt: skip
        assert expected in text, expected
    html = await client.get(credit["hostedUrl"])
    assert "<h1>Credit note</h1>" in html.text and "-€1,054.00" in html.text


async def test_a_credit_note_never_credits_more_than_the_invoice_left(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="growth")
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    [march] = await invoices(runtime, account.organization.id)
    net_march = stored_document(march).subtotal_minor
    clock.set(datetime(2026, 4, 2, tzinfo=UTC))
    await runtime.billing.change_plan(account.organization.id, "scale", Timing.NOW, "up")
    clock.set(datetime(2026, 4, 3, tzinfo=UTC))
    await runtime.billing.change_plan(account.organization.id, "starter", Timing.NOW, "down")
    notes = [i for i in await invoices(runtime, account.organization.id) if i.kind != "invoice"]
    [note] = notes
    document = stored_document(note)
    assert document.subtotal_minor == -net_march
    kept = document.lines[-1]
    assert kept.description == "Kept as credit balance for the next invoices"
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, account.organization.id)
    assert subscription is not None and subscription.credit_minor == kept.amount_minor > 0
    assert sum(line.amount_minor for line in document.lines) == -net_march
