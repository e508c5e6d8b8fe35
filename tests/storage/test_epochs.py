"""Raw usage events by epoch: a key recorded in an earlier epoch is still a replay, an epoch
starts only once the writers of the current one committed, and retention removes whole epochs
(PostgreSQL: their partitions) while counters, rollups, invoices and statistics stay."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import limits.retention
from billing.closing import close_all_periods
from billing.models import Invoice
from core.clock import FrozenClock
from core.orgs import Organization
from limits import UsageInput, event_storage
from limits.event_storage import partition_name
from limits.models import UsageCounter, UsageRollup, UsageRollupTotal, epoch_of
from limits.retention import maintain
from limits.stats import Granularity
from limits.types import IdempotencyKeyReused
from tally.runtime import Runtime
from tests.storage.support import fresh_runtime, month_start, open_org, partitions, read
from tests.support import usage_events

pytestmark = pytest.mark.anyio

RETENTION = timedelta(days=400)
ATTRIBUTES = {"model": "gpt-4o", "action": "chat_reply", "agent_id": "agent-1"}


def tokens(key: str, amount: int) -> UsageInput:
    return UsageInput("tokens", amount, key, None, ATTRIBUTES)


@pytest.fixture(params=["function", "python"])
def writer(request: pytest.FixtureRequest, empty_database_url: str) -> str:
    """Which ledger records: PostgreSQL's function, or the Python reference (SQLite's)."""
    if request.param == "python" and empty_database_url.startswith("sqlite"):
        pytest.skip("SQLite has the Python ledger only (the 'function' run is it)")
    return str(request.param)


async def current_epoch(runtime: Runtime) -> int:
    async with runtime.db.read() as session:
        return (await event_storage.epochs(session))[-1].epoch


async def epochs_by_key(runtime: Runtime, organization: Organization) -> dict[str, int]:
    async with runtime.db.read() as session:
        rows = await usage_events(session, organization.id)
    return {row.idempotency_key: row.epoch for row in rows if row.resource == "tokens"}


async def test_a_key_recorded_in_an_earlier_epoch_is_still_a_replay(
    empty_database_url: str, writer: str
) -> None:
    clock = FrozenClock(month_start(1) + timedelta(days=9))
    async with fresh_runtime(empty_database_url, clock) as runtime:
        runtime.engine.ledger_function = writer == "function"
        organization = (await open_org(runtime)).organization
        (first,) = await runtime.usage.record(organization, [tokens("k1", 100)])
        assert first.status == "accepted"
        earlier = await current_epoch(runtime)

        clock.advance(timedelta(days=31))
        done = await maintain(runtime.db, clock.now(), RETENTION)
        assert done.started == epoch_of(clock.now()) == await current_epoch(runtime) > earlier
        replay, fresh = await runtime.usage.record(
            organization, [tokens("k1", 100), tokens("k2", 50)]
        )
        with pytest.raises(IdempotencyKeyReused):
            await runtime.usage.record(organization, [tokens("k1", 99)])

        assert (replay.status, replay.used) == ("duplicate", 100)  # the first decision
        assert (fresh.status, fresh.used) == ("accepted", 50)  # a new period: k1 counted nothing
        assert await epochs_by_key(runtime, organization) == {"k1": earlier, "k2": done.started}
        if empty_database_url.startswith("postgresql"):
            assert {partition_name(earlier), partition_name(done.started)} <= partitions(
                empty_database_url
            )


async def test_an_epoch_starts_only_once_the_writers_of_the_current_one_committed(
    empty_database_url: str, writer: str
) -> None:
    if empty_database_url.startswith("sqlite"):
        pytest.skip("SQLite writes one transaction at a time: no writer to wait for")
    clock = FrozenClock(month_start(1) + timedelta(days=9))
    later = clock.now() + timedelta(days=31)
    async with fresh_runtime(empty_database_url, clock) as runtime:
        runtime.engine.ledger_function = writer == "function"
        organization = (await open_org(runtime)).organization
        earlier = await current_epoch(runtime)
        async with runtime.db.write() as session:
            events = runtime.engine.prepare(organization, [tokens("k1", 100)])
            (decision,) = await runtime.engine.apply(session, organization, events)
            assert decision.status == "accepted"
            starting = asyncio.create_task(maintain(runtime.db, later, RETENTION))
            await asyncio.sleep(0.5)
            assert not starting.done(), "the new epoch waits for the writer holding the lock"
        done = await starting

        assert done.started == epoch_of(later)
        clock.set(later)
        (replay,) = await runtime.usage.record(organization, [tokens("k1", 100)])
        assert (replay.status, replay.used) == ("duplicate", 100)
        assert await epochs_by_key(runtime, organization) == {"k1": earlier}


async def test_retention_removes_whole_epochs_and_keeps_counters_rollups_invoices_and_stats(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits.retention, "DELETE_BATCH", 2)  # SQLite deletes in batches
    url = empty_database_url
    month = month_start(1)
    clock = FrozenClock(month + timedelta(days=9))
    async with fresh_runtime(url, clock) as runtime:
        organization = (await open_org(runtime)).organization
        migrated = await current_epoch(runtime)
        first = (await maintain(runtime.db, clock.now(), RETENTION)).started
        await runtime.usage.record(organization, [tokens(f"old-{n}", 10 + n) for n in range(5)])
        clock.set(month + timedelta(days=40))
        second = (await maintain(runtime.db, clock.now(), RETENTION)).started
        await runtime.usage.record(organization, [tokens("new-0", 1000)])
        clock.set(month_start(2) + timedelta(hours=2))
        closing = await close_all_periods(
            runtime.db, runtime.engine, runtime.catalog, runtime.provider, clock.now()
        )
        assert [item.period.start for item in closing.closed] == [month]
        assert first is not None and second is not None

        async def kept() -> dict[str, object]:
            statistics = await runtime.usage.statistics(
                organization, resource="tokens", start=month, end=month_start(2),
                granularity=Granularity.DAY, timezone="UTC",
            )  # fmt: skip
            return {
                "statistics": statistics,
                **{
                    table: read(url, f"SELECT * FROM {table} WHERE organization_id = :o "
                                "ORDER BY 1, 2, 3, 4", o=organization.id)
                    for table in (UsageCounter.__tablename__, UsageRollup.__tablename__,
                                  UsageRollupTotal.__tablename__, Invoice.__tablename__)
                },
            }  # fmt: skip

        before = await kept()
        assert before["invoices"] and before["usage_rollups"]
        assert set(await epochs_by_key(runtime, organization)) == {
            *(f"old-{n}" for n in range(5)),
            "new-0",
        }

        # the second epoch started 40 days after `month`: 30 days on, it is the oldest kept
        clock.set(month + timedelta(days=71))
        done = await maintain(runtime.db, clock.now(), timedelta(days=30))

        assert [removed.epoch for removed in done.removed] == [migrated, first]
        assert [epoch.epoch for epoch in done.kept] == [second, epoch_of(clock.now())]
        assert await epochs_by_key(runtime, organization) == {"new-0": second}
        assert await kept() == before
        if url.startswith("postgresql"):
            names = partitions(url)
            assert partition_name(second) in names
            assert not {partition_name(migrated), partition_name(first)} & names
        again = await maintain(runtime.db, clock.now(), timedelta(days=30))
        assert (again.started, again.removed) == (None, ())
        # past the retention a key is forgotten: the same event counts anew
        (late,) = await runtime.usage.record(organization, [tokens("old-0", 10)])
        assert (late.status, late.used) == ("accepted", 10)
