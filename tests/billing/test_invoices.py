"""Local dunning: an invoice past its due date is overdue, the subscription past_due, usage
stops after the grace; marking it paid (mutation or command) restores access at once."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import anyio
import httpx
import pytest

from billing import repository
from billing.accounts import OpenedAccount
from billing.closing import close_due_periods
from billing.invoices import InvoiceService, OverdueInvoices
from billing.models import Invoice
from billing.provider import Timing
from core.clock import FrozenClock
from core.config import ConfigError, Settings
from core.orgs import Organization, Role
from tally import cli
from tally.runtime import Runtime, build_runtime
from tests.conftest import OpenOrg
from tests.support import graphql, member_key

pytestmark = pytest.mark.anyio

GRACE = timedelta(days=7)
AFTER_MARCH = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
MARK_PAID = """mutation($id: ID!) { markInvoicePaid(invoiceId: $id) {
  __typename
  ... on InvoicePaid { invoice { number status kind paidAt dueOn } }
  ... on Error { code message } } }"""
INVOICE_STATUSES = "{ organization { invoices { nodes { id number status kind dueOn } } } }"


async def state(
    runtime: Runtime, organization_id: str
) -> tuple[Organization, str, datetime | None]:
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
        organization = await session.get(Organization, organization_id)
    assert subscription is not None and organization is not None
    return organization, subscription.status, subscription.past_due_since


async def overdue_of(service: InvoiceService, organization_id: str) -> list[OverdueInvoices]:
    """The overdue pass (over every organization of the shared database), as it found one."""
    flagged = await service.flag_overdue(GRACE)
    return [item for item in flagged if item.organization_id == organization_id]


async def march_invoice(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> tuple[OpenedAccount, Invoice]:
    """An organization opened on 15 March, its March invoice issued on 1 April, due 1 May."""
    account = await open_org()
    clock.set(AFTER_MARCH)
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, account.organization.id)
        subscription = await repository.lock_subscription(session, account.organization.id)
        assert organization is not None and subscription is not None
        await close_due_periods(
            session,
            runtime.engine,
            runtime.catalog,
            runtime.provider,
            organization,
            subscription,
            clock.now(),
        )
    async with runtime.db.read() as session:
        [invoice] = await repository.list_invoices(session, account.organization.id, 10)
    assert invoice.due_on == date(2026, 5, 1)
    return account, invoice


async def test_an_unpaid_invoice_goes_overdue_then_usage_stops_until_it_is_marked_paid(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account, invoice = await march_invoice(runtime, clock, open_org)
    organization_id = invoice.organization_id
    service = InvoiceService(runtime.db, clock)

    clock.set(datetime(2026, 5, 1, 23, 59, tzinfo=UTC))
    assert await overdue_of(service, organization_id) == []
    assert (await state(runtime, organization_id))[1:] == ("active", None)

    clock.set(datetime(2026, 5, 2, 8, 0, tzinfo=UTC))
    [flagged] = await overdue_of(service, organization_id)
    assert [item.number for item in flagged.invoices] == [invoice.number]
    overdue_since = datetime(2026, 5, 2, tzinfo=UTC)
    assert flagged.usage_stops_at == overdue_since + GRACE
    organization, status, past_due_since = await state(runtime, organization_id)
    assert (status, past_due_since) == ("past_due", overdue_since)
    assert organization.usage_suspended_from == overdue_since + GRACE

    clock.set(datetime(2026, 5, 12, tzinfo=UTC))
    await service.flag_overdue(GRACE)
    organization, status, past_due_since = await state(runtime, organization_id)
    assert past_due_since == overdue_since, "a later pass does not extend the grace"
    assert organization.usage_suspended_from == overdue_since + GRACE

    key = await member_key(runtime, account, Role.BILLING)
    body = await graphql(client, key, INVOICE_STATUSES)
    [node] = body["data"]["organization"]["invoices"]["nodes"]
    assert (node["status"], node["dueOn"]) == ("overdue", "2026-05-01")

    paid = await graphql(client, key, MARK_PAID, {"id": node["id"]})
    result = paid["data"]["markInvoicePaid"]
    assert result["__typename"] == "InvoicePaid"
    assert result["invoice"]["status"] == "paid"
    assert result["invoice"]["paidAt"].startswith("2026-05-12T00:00:00")
    organization, status, past_due_since = await state(runtime, organization_id)
    assert (status, past_due_since, organization.usage_suspended_from) == ("active", None, None)

    replay = await graphql(client, key, MARK_PAID, {"id": node["id"]})
    assert replay["data"]["markInvoicePaid"]["invoice"]["paidAt"] == (result["invoice"]["paidAt"])
    assert await overdue_of(service, organization_id) == []


async def test_access_returns_only_once_nothing_is_overdue(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    _, march = await march_invoice(runtime, clock, open_org)
    clock.set(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, march.organization_id)
        subscription = await repository.lock_subscription(session, march.organization_id)
        assert organization is not None and subscription is not None
        await close_due_periods(
            session, runtime.engine, runtime.catalog, runtime.provider, organization,
            subscription, clock.now(),
        )  # fmt: skip
    clock.set(datetime(2026, 6, 5, tzinfo=UTC))
    service = InvoiceService(runtime.db, clock)
    [flagged] = await overdue_of(service, march.organization_id)
    assert len(flagged.invoices) == 2
    await service.mark_paid_by_number(march.number)
    organization, status, _ = await state(runtime, march.organization_id)
    assert status == "past_due" and organization.usage_suspended_from is not None
    april = next(i for i in flagged.invoices if i.number != march.number)
    await service.mark_paid(april.organization_id, april.id)
    organization, status, _ = await state(runtime, march.organization_id)
    assert (status, organization.usage_suspended_from) == ("active", None)


async def test_a_credit_note_is_not_payable_and_a_stranger_finds_nothing(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account, march = await march_invoice(runtime, clock, open_org)
    clock.set(datetime(2026, 4, 15, 12, 0, tzinfo=UTC))
    await runtime.billing.change_plan(march.organization_id, "growth", Timing.NOW, "down")
    key = await member_key(runtime, account, Role.BILLING)
    nodes = (await graphql(client, key, INVOICE_STATUSES))["data"]["organization"]["invoices"]
    [note] = [node for node in nodes["nodes"] if node["kind"] == "credit_note"]
    assert note["status"] == "issued"
    refused = await graphql(client, key, MARK_PAID, {"id": note["id"]})
    answer = refused["data"]["markInvoicePaid"]
    assert answer["code"] == "INVOICE_NOT_PAYABLE" and note["number"] in answer["message"]

    other = await open_org()
    stranger = await graphql(client, other.owner_api_key, MARK_PAID, {"id": march.id})
    assert stranger["data"]["markInvoicePaid"]["code"] == "NOT_FOUND"
    member = await member_key(runtime, account, Role.MEMBER)
    forbidden = await graphql(client, member, MARK_PAID, {"id": march.id})
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_mark_paid_command(
    runtime: Runtime,
    clock: FrozenClock,
    open_org: OpenOrg,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, march = await march_invoice(runtime, clock, open_org)
    monkeypatch.setenv("TALLY_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.delenv("TALLY_BILLING", raising=False)
    assert await _in_thread(["invoices", "mark-paid", march.number]) == 0
    assert f"{march.number}  paid" in capsys.readouterr().out
    assert await _in_thread(["invoices", "mark-paid", "NOPE-2026-000001"]) == 1
    assert "no local invoice numbered 'NOPE-2026-000001'" in capsys.readouterr().err
    async with runtime.db.read() as session:
        stored = await repository.get_invoice(session, march.organization_id, march.id)
    assert stored is not None and stored.status == "paid" and stored.paid_at is not None


def test_settings_of_numbering_terms_and_the_seller() -> None:
    settings = Settings.from_env(
        {"TALLY_INVOICE_PREFIX": "ACME-EU", "TALLY_PAYMENT_TERMS_DAYS": "45",
         "TALLY_DUNNING_GRACE_DAYS": "3", "TALLY_SELLER_LEGAL_FORM": "SAS",
         "TALLY_SELLER_REGISTRATION": "RCS Paris 333 417 522"}
    )  # fmt: skip
    assert (settings.invoice_prefix, settings.payment_terms_days) == ("ACME-EU", 45)
    assert (settings.dunning_grace_days, settings.seller_registration) == (
        3,
        "RCS Paris 333 417 522",
    )
    assert settings.demo, "the default SQLite database is the demo"
    assert not Settings.from_env({"TALLY_DATABASE_URL": "postgresql://db/tally"}).demo
    for bad in ("TAL 2026", "-TAL", "TAL--X", "TAL/1", ""):
        with pytest.raises(ConfigError, match="TALLY_INVOICE_PREFIX"):
            Settings.from_env({"TALLY_INVOICE_PREFIX": bad})
    with pytest.raises(ConfigError, match="TALLY_PAYMENT_TERMS_DAYS"):
        Settings.from_env({"TALLY_PAYMENT_TERMS_DAYS": "-1"})


def test_the_seller_identity_is_checked_at_start_up(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tally"):
        local = build_runtime(Settings(database_url=database_url))
    assert "TALLY_SELLER_NAME, TALLY_SELLER_ADDRESS, TALLY_SELLER_VAT_ID" in caplog.text
    assert local.warnings == (
        caplog.records[0].getMessage().removesuffix("; invoices issued now lack them"),
    )
    stripe = Settings(database_url=database_url, billing="stripe", stripe_api_key="sk_test_x")
    with pytest.raises(ConfigError, match="TALLY_SELLER_REGISTRATION"):
        build_runtime(stripe)
    complete = Settings(
        database_url=database_url, billing="stripe", stripe_api_key="sk_test_x",
        seller_name="Tally SAS", seller_address=("1 rue de Rivoli", "75001 Paris"),
        seller_vat_id="FR23334175221", seller_registration="RCS Paris 333 417 522",
    )  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tally"):
        assert build_runtime(complete).warnings == ()
    assert "seller" not in caplog.text
    build_runtime(
        Settings(database_url=database_url, billing="stripe", stripe_api_key="x", demo=True)
    )


async def _in_thread(argv: list[str]) -> int:
    """The command in a thread of its own (it runs its own event loop)."""
    return await anyio.to_thread.run_sync(cli.main, argv)
