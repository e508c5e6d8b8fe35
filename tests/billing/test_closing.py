"""Closing periods: only after the grace window, billed by the plan in force during the
period, scheduled changes and cancellations at the period's end, trials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from billing import plan_history, repository
from billing.closing import ClosedPeriod, close_all_periods, waiting_period
from billing.models import Invoice
from billing.provider import Timing
from core.audit import repository as audit_repository
from core.clock import FrozenClock
from core.orgs import Organization
from limits import UsageInput
from tally.runtime import Runtime
from tests.conftest import OpenOrg

pytestmark = pytest.mark.anyio

APRIL_1 = datetime(2026, 4, 1, tzinfo=UTC)
GRACE = timedelta(seconds=3600)


@pytest.fixture
def plans() -> str:
    return """
[plans.meter]
name = "Meter"
price_monthly = "100.00"
currency = "EUR"
[plans.meter.limits]
tokens = 1000
[plans.meter.policies]
tokens = "overage"
[plans.meter.overage]
tokens = "0.01"

[plans.meter-plus]
name = "Meter Plus"
price_monthly = "200.00"
currency = "EUR"
[plans.meter-plus.limits]
tokens = 2000
[plans.meter-plus.policies]
tokens = "overage"
[plans.meter-plus.overage]
tokens = "0.005"

[topups.tokens-400]
tokens = 400
price = "3.00"
currency = "EUR"

[plans.trial]
name = "Trial"
price_monthly = "30.00"
currency = "EUR"
trial_days = 14
[plans.trial.limits]
tokens = 1000
"""


async def close(runtime: Runtime, organization_id: str) -> list[ClosedPeriod]:
    """What `tally close-periods` closes of this organization (the database is shared with
    other tests' organizations)."""
    run = await close_all_periods(
        runtime.db, runtime.engine, runtime.catalog, runtime.provider, runtime.clock.now()
    )
    return [closed for closed in run.closed if closed.organization_id == organization_id]


async def organization_of(runtime: Runtime, organization_id: str) -> Organization:
    async with runtime.db.read() as session:
        organization = await session.get(Organization, organization_id)
    assert organization is not None
    return organization


async def invoices(runtime: Runtime, organization_id: str) -> list[Invoice]:
    async with runtime.db.read() as session:
        return list(await repository.list_invoices(session, organization_id, 100))


async def audited(runtime: Runtime, organization_id: str) -> list[tuple[str, object, object]]:
    """The organization's audit entries, oldest first: (action, before, after)."""
    async with runtime.db.read() as session:
        entries = await audit_repository.page(session, organization_id, 100, None)
    return [(entry.action, entry.before, entry.after) for entry in reversed(entries)]


async def use_tokens(
    runtime: Runtime, organization_id: str, amount: int, key: str, at: datetime | None = None
) -> None:
    organization = await organization_of(runtime, organization_id)
    [decision] = await runtime.usage.record(
        organization, [UsageInput("tokens", amount, key, at, {})]
    )
    assert decision.status == "accepted", decision


async def test_a_period_stays_open_through_its_grace_window_and_late_usage_is_billed(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="meter")
    organization_id = account.organization.id
    await use_tokens(runtime, organization_id, 1200, "march-1")
    clock.set(APRIL_1 + timedelta(minutes=10))
    assert await close(runtime, organization_id) == []
    run = await close_all_periods(
        runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
    )
    assert [w.closes_at for w in run.waiting if w.organization_id == organization_id] == [
        APRIL_1 + GRACE
    ]
    late = APRIL_1 - timedelta(seconds=30)
    await use_tokens(runtime, organization_id, 300, "march-late", at=late)
    assert await invoices(runtime, organization_id) == []
    clock.set(APRIL_1 + GRACE)
    [closed] = await close(runtime, organization_id)
    assert closed.period.start.date() == date(2026, 3, 1)
    [invoice] = await invoices(runtime, organization_id)
    assert invoice.document is not None
    overage = invoice.document["lines"][1]
    assert overage[0].startswith("AI Tokens over the plan's 1.0K: 500 tokens at 0.01 EUR")
    assert overage[3] == 500
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
        organization = await session.get(Organization, organization_id)
    assert subscription is not None and organization is not None
    assert waiting_period(runtime.engine, organization, subscription, clock.now()) is None


async def test_overage_is_priced_by_the_plan_in_force_during_the_period(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="meter")
    organization_id = account.organization.id
    await use_tokens(runtime, organization_id, 1500, "march-1")
    clock.set(APRIL_1 + timedelta(minutes=20))
    outcome = await runtime.billing.change_plan(organization_id, "meter-plus", Timing.NOW, "up")
    assert outcome.subscription.plan.id == "meter-plus"
    clock.set(APRIL_1 + GRACE + timedelta(minutes=1))
    closed = await close(runtime, organization_id)
    assert [(c.period.start.date(), c.switched_plan) for c in closed] == [(date(2026, 3, 1), False)]
    march = next(
        i for i in await invoices(runtime, organization_id) if i.source == "period:2026-03-01"
    )
    assert march.document is not None
    descriptions = [line[0] for line in march.document["lines"]]
    assert descriptions[0].startswith("Meter plan, 1 March 2026")
    assert descriptions[1].startswith("AI Tokens over the plan's 1.0K: 500 tokens at 0.01 EUR")
    assert march.document["lines"][1][3] == 500


async def test_a_scheduled_change_takes_effect_at_the_period_end_before_billing(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="meter-plus")
    organization_id = account.organization.id
    outcome = await runtime.billing.change_plan(organization_id, "meter", Timing.AUTO, "down")
    assert outcome.subscription.pending_plan is not None
    clock.set(APRIL_1 + timedelta(minutes=5))
    assert await close(runtime, organization_id) == []
    assert (await organization_of(runtime, organization_id)).plan_id == "meter"
    async with runtime.db.read() as session:
        assert await plan_history.plan_at(session, organization_id, APRIL_1) == "meter"
        before = APRIL_1 - timedelta(microseconds=1)
        assert await plan_history.plan_at(session, organization_id, before) == "meter-plus"
    assert (await audited(runtime, organization_id))[-1] == (
        "plan.changed",
        {"plan_id": "meter-plus"},
        {"plan_id": "meter", "effective_at": APRIL_1.isoformat()},
    )
    clock.set(APRIL_1 + GRACE)
    [closed] = await close(runtime, organization_id)
    assert (closed.plan_id, closed.switched_plan) == ("meter", True)
    [invoice] = await invoices(runtime, organization_id)
    assert invoice.document is not None
    assert invoice.document["lines"][0][0].startswith("Meter Plus plan, 1 March 2026")


async def test_a_trial_is_not_invoiced_and_billing_starts_when_it_ends(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="trial")
    organization_id = account.organization.id
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
    assert subscription is not None
    assert subscription.status == "trialing"
    assert subscription.trial_ends_at == clock.now() + timedelta(days=14)
    clock.set(APRIL_1 + GRACE)
    [march] = await close(runtime, organization_id)
    [invoice] = await invoices(runtime, organization_id)
    assert march.invoice is not None and march.invoice.id == invoice.id
    assert invoice.document is not None
    [line] = invoice.document["lines"]
    assert line[0].endswith("(from 29 March 2026)")
    assert line[3] == 242  # 30.00 EUR for 2.5 of 31 days (the trial ends on 29 March at noon)
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
    assert subscription is not None and subscription.status == "active"


async def test_a_period_wholly_in_a_trial_issues_no_invoice(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    clock.set(datetime(2026, 3, 1, 8, tzinfo=UTC))
    account = await open_org(plan="trial", anchor_day=10)
    organization_id = account.organization.id
    clock.set(datetime(2026, 3, 10, 2, tzinfo=UTC))
    [closed] = await close(runtime, organization_id)
    assert closed.invoice is None
    assert await invoices(runtime, organization_id) == []


async def test_cancellation_at_period_end_stops_usage_and_billing(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="meter")
    organization_id = account.organization.id
    async with runtime.db.write() as session:
        subscription = await repository.lock_subscription(session, organization_id)
        assert subscription is not None
        subscription.cancel_at_period_end = True
        await repository.add(session, subscription)
    clock.set(APRIL_1 + GRACE)
    [closed] = await close(runtime, organization_id)
    assert closed.period.end == APRIL_1
    clock.set(APRIL_1 + timedelta(days=62))
    assert await close(runtime, organization_id) == []
    async with runtime.db.read() as session:
        subscription = await repository.get_subscription(session, organization_id)
        organization = await session.get(Organization, organization_id)
    assert subscription is not None and organization is not None
    assert (subscription.status, subscription.canceled_at) == ("canceled", APRIL_1)
    assert organization.usage_suspended_from == APRIL_1
    assert len(await invoices(runtime, organization_id)) == 1
    assert (await audited(runtime, organization_id))[-1] == (
        "subscription.canceled",
        {"status": "active"},
        {"status": "canceled", "canceled_at": APRIL_1.isoformat()},
    )


async def test_an_organization_that_cannot_be_closed_does_not_stop_the_others(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    healthy = (await open_org(plan="meter")).organization.id
    retired = (await open_org(plan="meter")).organization.id
    async with runtime.db.write() as session:
        organization = await repository.lock_organization(session, retired)
        assert organization is not None
        organization.plan_id = "retired-plan"
        await repository.add(session, organization)
    clock.set(APRIL_1 + GRACE)
    try:
        run = await close_all_periods(
            runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
        )
    finally:
        async with runtime.db.write() as session:
            organization = await repository.lock_organization(session, retired)
            assert organization is not None
            organization.plan_id = "meter"
            await repository.add(session, organization)
    assert healthy in {closed.organization_id for closed in run.closed}
    [failed] = [f for f in run.failed if f.organization_id == retired]
    assert "retired-plan" in failed.reason
    assert await invoices(runtime, retired) == []


async def test_overage_counts_only_what_the_top_up_did_not_cover(
    runtime: Runtime, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org(plan="meter")
    organization_id = account.organization.id
    bought = await runtime.topups.purchase(account.organization, "tokens-400", "pack-1")
    assert bought.status == "done"
    await use_tokens(runtime, organization_id, 1500, "march-1")
    clock.set(APRIL_1 + GRACE)
    [closed] = await close(runtime, organization_id)
    assert closed.invoice is not None and closed.invoice.document is not None
    [base, overage] = closed.invoice.document["lines"]
    assert base[0].startswith("Meter plan, 1 March 2026")
    assert overage[0].startswith("AI Tokens over the plan's 1.0K: 100 tokens at 0.01 EUR")
    assert overage[3] == 100
