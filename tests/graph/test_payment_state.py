"""The page's view of payment state: a late payment's grace, then suspended usage, then paid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from billing.closing import close_all_periods
from billing.invoices import InvoiceService
from core.clock import FrozenClock
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

SUBSCRIPTION = """{ organization { subscription { status usageSuspended
  paymentIssue { pastDueSince usageStopsAt message } } } }"""
CONSUME = """mutation { consumeUsage(resource: "tokens", amount: 10, idempotencyKey: "%s") {
  __typename ... on Error { code message } } }"""
MARK_PAID = """mutation($id: ID!) { markInvoicePaid(invoiceId: $id) { __typename } }"""
INVOICES = "{ organization { invoices { nodes { id status } } } }"


async def test_a_late_payment_shows_its_grace_then_suspends_usage_until_paid(
    runtime: Runtime, client: httpx.AsyncClient, clock: FrozenClock, open_org: OpenOrg
) -> None:
    clock.set(datetime(2026, 3, 1, 9, tzinfo=UTC))
    account = await open_org(plan="growth")
    key = account.owner_api_key
    clock.set(datetime(2026, 4, 1, 2, tzinfo=UTC))
    await close_all_periods(
        runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
    )
    clock.set(datetime(2026, 5, 3, 10, tzinfo=UTC))
    await InvoiceService(runtime.db, clock).flag_overdue(timedelta(days=7))

    body = await graphql(client, key, SUBSCRIPTION)
    subscription = body["data"]["organization"]["subscription"]
    assert subscription["status"] == "PAST_DUE"
    assert subscription["usageSuspended"] is False
    issue = subscription["paymentIssue"]
    assert (issue["pastDueSince"], issue["usageStopsAt"]) == (
        "2026-05-02T00:00:00+00:00",
        "2026-05-09T00:00:00+00:00",
    )
    assert "before 9 May 2026 at 00:00 UTC" in issue["message"]
    consumed = await graphql(client, key, CONSUME % "in-grace")
    assert consumed["data"]["consumeUsage"]["__typename"] != "SubscriptionInactiveError"

    clock.set(datetime(2026, 5, 9, 0, 1, tzinfo=UTC))
    body = await graphql(client, key, SUBSCRIPTION)
    subscription = body["data"]["organization"]["subscription"]
    assert subscription["usageSuspended"] is True
    assert "has been refused since 9 May 2026" in subscription["paymentIssue"]["message"]
    refused = await graphql(client, key, CONSUME % "after-grace")
    assert refused["data"]["consumeUsage"]["__typename"] == "SubscriptionInactiveError"
    assert refused["data"]["consumeUsage"]["code"] == "SUBSCRIPTION_INACTIVE"

    invoices = await graphql(client, key, INVOICES)
    [overdue] = [
        node
        for node in invoices["data"]["organization"]["invoices"]["nodes"]
        if node["status"] == "overdue"
    ]
    paid = await graphql(client, key, MARK_PAID, {"id": overdue["id"]})
    assert paid["data"]["markInvoicePaid"]["__typename"] == "InvoicePaid"
    body = await graphql(client, key, SUBSCRIPTION)
    assert body["data"]["organization"]["subscription"] == {
        "status": "ACTIVE",
        "usageSuspended": False,
        "paymentIssue": None,
    }
    restored = await graphql(client, key, CONSUME % "paid")
    assert restored["data"]["consumeUsage"]["__typename"] != "SubscriptionInactiveError"
