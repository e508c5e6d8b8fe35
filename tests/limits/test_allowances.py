"""Extra allowances (top-ups): drawn only past the plan's limit, exactly, surviving resets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from limits import UsageInput, repository
from tally.runtime import Runtime
from tests.limits.conftest import consume, open_tiny

pytestmark = pytest.mark.anyio

APRIL = datetime(2026, 4, 1, tzinfo=UTC)


async def grant(runtime: Runtime, account: OpenedAccount, amount: int) -> int:
    async with runtime.db.write() as session:
        return await repository.grant_allowance(
            session, account.organization.id, "tokens", amount, runtime.clock.now()
        )


async def remaining(runtime: Runtime, account: OpenedAccount) -> int:
    async with runtime.db.read() as session:
        return await repository.allowance(session, account.organization.id, "tokens", lock=False)


async def test_usage_draws_on_the_plan_first_then_the_allowance(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    assert await grant(runtime, account, 50) == 50
    within = await consume(runtime, account, "tokens", 90, "a")
    assert (within.status, within.used, within.extra) == ("accepted", 90, 0)
    assert await remaining(runtime, account) == 50
    past = await consume(runtime, account, "tokens", 30, "b")
    assert (past.status, past.used, past.extra, past.remaining) == ("accepted", 120, 50, 30)
    assert await remaining(runtime, account) == 30
    refused = await consume(runtime, account, "tokens", 31, "c")
    assert refused.status == "rejected"
    assert "100 and 50 extra" in refused.explanation
    exact = await consume(runtime, account, "tokens", 30, "d")
    assert (exact.status, exact.used, exact.remaining) == ("accepted", 150, 0)
    assert await remaining(runtime, account) == 0


async def test_the_meter_shows_the_plan_limit_plus_the_allowance(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await grant(runtime, account, 50)
    await consume(runtime, account, "tokens", 120, "a")
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert (meter.used, meter.drawn, meter.extra_left, meter.total_limit) == (120, 20, 30, 150)
    assert (meter.remaining, meter.percent, meter.overage) == (30, 80.0, 0)
    assert meter.display == "120 / 150"


async def test_what_remains_survives_the_period_reset(runtime: Runtime, clock: FrozenClock) -> None:
    account = await open_tiny(runtime)
    await grant(runtime, account, 50)
    await consume(runtime, account, "tokens", 120, "march")
    clock.set(APRIL + timedelta(hours=2))
    april = await consume(runtime, account, "tokens", 130, "april")
    assert (april.status, april.used) == ("accepted", 130)
    assert await remaining(runtime, account) == 0
    assert (await consume(runtime, account, "tokens", 1, "more")).status == "rejected"


async def test_a_reservation_counts_against_the_allowance(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await grant(runtime, account, 50)
    async with runtime.db.write() as session:
        held = await runtime.engine.reserve(
            session, account.organization, "tokens", 140,
            ttl=timedelta(seconds=60), idempotency_key="r",
        )  # fmt: skip
    assert held.reservation is not None and held.decision.remaining == 10
    assert (await consume(runtime, account, "tokens", 11, "a")).status == "rejected"
    async with runtime.db.write() as session:
        committed = await runtime.engine.commit(
            session, account.organization, held.reservation.id, 145
        )
    assert (committed.status, committed.used) == ("accepted", 145)
    assert await remaining(runtime, account) == 5


async def test_check_reads_the_allowance_and_draws_nothing(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await grant(runtime, account, 50)
    async with runtime.db.read() as session:
        fits, too_much = await runtime.engine.check(
            session,
            account.organization,
            [UsageInput("tokens", 150, "a"), UsageInput("tokens", 1, "b")],
        )
    assert (fits.status, too_much.status) == ("accepted", "rejected")
    assert await remaining(runtime, account) == 50


async def test_concurrent_consumers_never_pass_the_plan_and_the_allowance(
    runtime: Runtime,
) -> None:
    account = await open_tiny(runtime)
    await grant(runtime, account, 337)
    await consume(runtime, account, "tokens", 95, "start")

    async def one(index: int) -> int:
        decision = await consume(runtime, account, "tokens", 7, f"k{index}")
        return decision.requested if decision.status == "accepted" else 0

    accepted = sum(await asyncio.gather(*(one(i) for i in range(80))))
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert meter.used == 95 + accepted
    assert meter.used <= 100 + 337 and 100 + 337 - meter.used < 7
    assert (meter.drawn, meter.extra_left) == (meter.used - 100, 437 - meter.used)
    assert await remaining(runtime, account) == 437 - meter.used
