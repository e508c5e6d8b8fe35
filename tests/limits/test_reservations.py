from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import FrozenClock
from core.errors import NotFound
from limits import ReservationError, ReserveOutcome, UsageRejected
from tally.runtime import Runtime
from tests.limits.conftest import consume, open_tiny, used

pytestmark = pytest.mark.anyio


async def reserve(runtime: Runtime, account: object, amount: int, key: str,
                  ttl: int = 60) -> ReserveOutcome:  # fmt: skip
    async with runtime.db.write() as session:
        return await runtime.engine.reserve(
            session, account.organization, "tokens", amount,  # type: ignore[attr-defined]
            ttl=timedelta(seconds=ttl), idempotency_key=key,
        )  # fmt: skip


async def test_a_reservation_holds_room_until_committed(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    held = await reserve(runtime, account, 70, "r1")
    assert held.reservation is not None and held.decision.status == "accepted"
    assert (await consume(runtime, account, "tokens", 31, "c1")).status == "rejected"
    assert (await consume(runtime, account, "tokens", 30, "c2")).status == "accepted"
    async with runtime.db.write() as session:
        committed = await runtime.engine.commit(
            session, account.organization, held.reservation.id, 50
        )
    assert (committed.status, committed.used) == ("accepted", 80)
    assert (await consume(runtime, account, "tokens", 20, "c3")).status == "accepted"
    assert await used(runtime, account, "tokens") == 100


async def test_commit_twice_is_a_duplicate_and_release_after_commit_is_refused(
    runtime: Runtime,
) -> None:
    account = await open_tiny(runtime)
    held = await reserve(runtime, account, 10, "r1")
    assert held.reservation is not None
    async with runtime.db.write() as session:
        first = await runtime.engine.commit(session, account.organization, held.reservation.id, 8)
    async with runtime.db.write() as session:
        again = await runtime.engine.commit(session, account.organization, held.reservation.id, 8)
    assert (first.status, again.status, again.used) == ("accepted", "duplicate", 8)
    with pytest.raises(ReservationError, match="committed"):
        async with runtime.db.write() as session:
            await runtime.engine.release(session, account.organization, held.reservation.id)
    assert await used(runtime, account, "tokens") == 8


async def test_release_gives_the_room_back_and_is_idempotent(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    held = await reserve(runtime, account, 100, "r1")
    assert held.reservation is not None
    assert (await consume(runtime, account, "tokens", 1, "c1")).status == "rejected"
    for _ in range(2):
        async with runtime.db.write() as session:
            released = await runtime.engine.release(
                session, account.organization, held.reservation.id
            )
        assert released.status == "released"
    assert (await consume(runtime, account, "tokens", 100, "c2")).status == "accepted"


async def test_an_expired_reservation_frees_itself_without_a_cron(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    held = await reserve(runtime, account, 90, "r1", ttl=30)
    assert held.reservation is not None
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert (meter.used, meter.reserved, meter.remaining) == (0, 90, 10)
    clock.advance(timedelta(seconds=31))
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert (meter.reserved, meter.remaining) == (0, 100)
    assert (await consume(runtime, account, "tokens", 100, "after")).status == "accepted"
    with pytest.raises(ReservationError) as caught:
        async with runtime.db.write() as session:
            await runtime.engine.commit(session, account.organization, held.reservation.id, 5)
    assert caught.value.code == "RESERVATION_EXPIRED"
    assert await used(runtime, account, "tokens") == 100


async def test_a_reservation_that_does_not_fit_is_refused(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 60, "c1")
    refused = await reserve(runtime, account, 41, "r1")
    assert refused.reservation is None
    assert (refused.decision.status, refused.decision.used) == ("rejected", 60)


async def test_reserve_replays_return_the_same_reservation(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    outcomes = await asyncio.gather(*(reserve(runtime, account, 30, "same") for _ in range(8)))
    ids = {o.reservation.id for o in outcomes if o.reservation}
    assert len(ids) == 1
    assert sorted(o.decision.status for o in outcomes).count("accepted") == 1
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert meter.reserved == 30


async def test_concurrent_reservations_never_pass_the_limit(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    outcomes = await asyncio.gather(*(reserve(runtime, account, 7, f"r{i}") for i in range(30)))
    granted = [o for o in outcomes if o.reservation]
    assert len(granted) == 14
    async with runtime.db.read() as session:
        meter = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert meter.reserved == 98


@pytest.mark.parametrize(("amount", "ttl"), [(0, 60), (-5, 60), (10, 0), (10, 86_401)])
async def test_bad_reservations_are_refused(runtime: Runtime, amount: int, ttl: int) -> None:
    account = await open_tiny(runtime)
    with pytest.raises(UsageRejected):
        await reserve(runtime, account, amount, "bad", ttl=ttl)


async def test_unknown_and_foreign_reservations_are_not_found(runtime: Runtime) -> None:
    mine = await open_tiny(runtime)
    theirs = await open_tiny(runtime)
    held = await reserve(runtime, theirs, 10, "r1")
    assert held.reservation is not None
    for reservation_id in (held.reservation.id, "nope"):
        with pytest.raises(NotFound) as caught:
            async with runtime.db.write() as session:
                await runtime.engine.release(session, mine.organization, reservation_id)
        assert caught.value.code == "NOT_FOUND"


async def test_a_commit_after_the_period_ended_counts_in_the_current_period(
    runtime: Runtime, clock: FrozenClock
) -> None:
    april = datetime(2026, 4, 1, tzinfo=UTC)
    account = await open_tiny(runtime)
    clock.set(april - timedelta(minutes=5))
    held = await reserve(runtime, account, 60, "r1", ttl=3600)
    assert held.reservation is not None
    await consume(runtime, account, "tokens", 30, "march")
    clock.set(april + timedelta(minutes=30))
    await consume(runtime, account, "tokens", 50, "april")
    async with runtime.db.write() as session:
        refused = await runtime.engine.commit(
            session, account.organization, held.reservation.id, 51
        )
    assert (refused.status, refused.used) == ("rejected", 50)
    async with runtime.db.write() as session:
        committed = await runtime.engine.commit(
            session, account.organization, held.reservation.id, 45
        )
    assert (committed.status, committed.used) == ("accepted", 95)
    async with runtime.db.read() as session:
        before = april - timedelta(days=1)
        march = (await runtime.engine.usage(session, account.organization, before)).get("tokens")
        now = (await runtime.engine.usage(session, account.organization)).get("tokens")
    assert (march.used, march.reserved) == (30, 0)
    assert (now.used, now.reserved) == (95, 0)
