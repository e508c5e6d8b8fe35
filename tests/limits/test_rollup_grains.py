"""Every accepted event adds to one rollup row per grain (quarter hour, hour, UTC day) in
`usage_rollups` and in `usage_rollup_totals`; migration 0006 rebuilds both from the raw
events, and its downgrade gives back the hourly table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from core.clock import FrozenClock
from core.db import driver_url
from core.migrate import alembic_config
from limits import UsageInput, repository
from limits.models import UsageRollup, UsageRollupTotal
from tally.runtime import Runtime
from tests.limits.conftest import open_tiny
from tests.support import at, usage_events

pytestmark = pytest.mark.anyio

Sums = list[int]


@dataclass(frozen=True)
class Event:
    organization_id: str
    resource: str
    occurred_at: datetime
    model: str | None
    action: str | None
    amount: int
    cost_micros: int | None


def grain_buckets(instant: datetime) -> Iterator[tuple[int, datetime]]:
    """The quarter hour, hour and UTC day holding `instant`, from its UTC wall clock."""
    utc = instant.astimezone(UTC).replace(second=0, microsecond=0)
    yield 15, utc.replace(minute=utc.minute // 15 * 15)
    yield 60, utc.replace(minute=0)
    yield 1440, utc.replace(hour=0, minute=0)


def expected(
    events: Iterable[Event],
) -> tuple[dict[tuple[Any, ...], Sums], dict[tuple[Any, ...], Sums]]:
    detailed: dict[tuple[Any, ...], Sums] = defaultdict(lambda: [0, 0, 0, 0])
    totals: dict[tuple[Any, ...], Sums] = defaultdict(lambda: [0, 0, 0, 0])
    for event in events:
        sums = [
            event.amount,
            event.cost_micros or 0,
            event.amount if event.cost_micros is None else 0,
            1,
        ]
        for grain, bucket in grain_buckets(event.occurred_at):
            key = (event.organization_id, event.resource, grain, bucket)
            for row in (detailed[(*key, event.model or "", event.action or "")], totals[key]):
                for index, value in enumerate(sums):
                    row[index] += value
    return dict(detailed), dict(totals)


def stored(rows: Iterable[Any], key_length: int) -> dict[tuple[Any, ...], Sums]:
    """Rows (key columns, amount, cost_micros, unpriced_amount, events) by key, the bucket
    (4th column) read as an aware UTC instant."""
    found = {}
    for row in rows:
        key, sums = list(row[:key_length]), [int(value) for value in row[key_length:]]
        bucket = key[3]
        if isinstance(bucket, str):  # SQLite, read without the model's type
            assert len(bucket) == len("2026-03-01 00:15:00.000000"), bucket
            bucket = datetime.fromisoformat(bucket)
        key[3] = bucket.replace(tzinfo=UTC) if bucket.tzinfo is None else bucket
        found[tuple(key)] = sums
    return found


INSTANTS = [
    at(2026, 3, 28, 23, 59, 59, 999_999),
    at(2026, 3, 29),
    at(2026, 3, 29, 0, 14, 59),
    at(2026, 3, 29, 0, 15),
    at(2026, 3, 29, 0, 44, 30),
    at(2026, 3, 29, 1, 0, 0, 1),
    at(2026, 3, 29, 1, 0).astimezone(ZoneInfo("Asia/Kathmandu")),
    at(2026, 3, 29, 5, 35).astimezone(ZoneInfo("America/St_Johns")),
]
MODELS = ["gpt-4o", None, "in-house-llm"]


async def test_each_event_adds_to_every_grain_of_both_tables(
    runtime: Runtime, clock: FrozenClock
) -> None:
    clock.set(at(2026, 4, 1))
    account = await open_tiny(runtime, plan="soft")
    inputs = [
        UsageInput(
            "tokens",
            100 + index,
            f"k{index}",
            instant,
            {"model": model} if (model := MODELS[index % 3]) else {},
        )
        for index, instant in enumerate(INSTANTS * 2)
    ]
    for batch in (inputs[:5], inputs[5:]):  # the second adds to rows the first made
        async with runtime.db.write() as session:
            await runtime.engine.record(session, account.organization, batch)
    organization_id = account.organization.id
    async with runtime.db.read() as session:
        events = [
            Event(organization_id, e.resource, e.occurred_at, e.model, e.action, e.amount,
                  e.cost_micros)
            for e in await usage_events(session, organization_id)
        ]  # fmt: skip
        r, t = UsageRollup.__table__.c, UsageRollupTotal.__table__.c  # type: ignore[attr-defined]
        sums = (r.amount, r.cost_micros, r.unpriced_amount, r.events)
        detailed = stored(
            await session.execute(
                sa.select(r.organization_id, r.resource, r.grain, r.bucket, r.model, r.action,
                          *sums).where(r.organization_id == organization_id)
            ),
            6,
        )  # fmt: skip
        totals = stored(
            await session.execute(
                sa.select(t.organization_id, t.resource, t.grain, t.bucket, t.amount,
                          t.cost_micros, t.unpriced_amount, t.events)
                .where(t.organization_id == organization_id)
            ),
            4,
        )  # fmt: skip
    assert len([e for e in events if e.resource == "tokens"]) == len(inputs)
    assert any(e.cost_micros is None for e in events) and any(e.cost_micros for e in events)
    assert (detailed, totals) == expected(events)
    assert {key[2] for key in totals} == {15, 60, 1440}


EVENT_COLUMNS = ", ".join(
    ("id", "organization_id", "resource", "idempotency_key", "amount", "period_start",
     "occurred_at", "recorded_at", "used_after", "limit_value", "model", "action",
     "cost_micros", "attributes")
)  # fmt: skip


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    with alembic_config(url) as config:
        (command.downgrade if down else command.upgrade)(config, revision)


def read(url: str, query: str) -> list[Any]:
    engine = sa.create_engine(driver_url(url, asynchronous=False))
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query)))
    finally:
        engine.dispose()


async def test_migration_0006_rebuilds_the_rollups_from_the_events_and_back(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    migrate(url, "0005")
    events = [
        Event(organization, resource, instant, model, action, 7 * index + 1, cost)
        for index, (organization, resource, instant, model, action, cost) in enumerate(
            (organization, resource, instant + shift, model, action, cost)
            for organization in ("org-a", "org-b")
            for resource in ("tokens", "documents")
            for instant in INSTANTS
            for shift, model, action, cost in (
                (timedelta(), "gpt-4o", "chat", 12),
                (timedelta(minutes=1), None, None, None),
                (timedelta(days=1), "gpt-4o", None, 5),
            )
        )
    ]
    engine = sa.create_engine(driver_url(url, asynchronous=False))
    try:
        with engine.begin() as connection:
            table = sa.Table("usage_events", sa.MetaData(), autoload_with=connection)
            connection.execute(
                table.insert(),
                [
                    {
                        "id": f"e{index}", "organization_id": e.organization_id,
                        "resource": e.resource, "idempotency_key": f"k{index}",
                        "amount": e.amount, "period_start": at(2026, 3, 1),
                        "occurred_at": e.occurred_at.astimezone(UTC), "recorded_at": at(2026, 4, 1),
                        "used_after": 0, "limit_value": None, "model": e.model,
                        "action": e.action, "cost_micros": e.cost_micros, "attributes": {},
                    }
                    for index, e in enumerate(events)
                ],
            )  # fmt: skip
    finally:
        engine.dispose()

    migrate(url, "0006")
    sums = "amount, cost_micros, unpriced_amount, events"
    detailed_query = f"SELECT organization_id, resource, grain, bucket, model, action, {sums} "
    detailed_query += "FROM usage_rollups"
    totals_query = (
        f"SELECT organization_id, resource, grain, bucket, {sums} FROM usage_rollup_totals"
    )
    assert (stored(read(url, detailed_query), 6), stored(read(url, totals_query), 4)) == expected(
        events
    )

    later = Event("org-a", "tokens", INSTANTS[3] + timedelta(minutes=3), "gpt-4o", "chat", 5, 1)
    async_engine = create_async_engine(driver_url(url, asynchronous=True))
    try:
        async with async_engine.begin() as connection:
            session = AsyncSession(bind=connection)
            await repository.add_rollups(
                session,
                [
                    {
                        "organization_id": later.organization_id, "resource": later.resource,
                        "bucket": at(2026, 3, 29, 0, 15), "model": "gpt-4o", "action": "chat",
                        "amount": 5, "cost_micros": 1, "unpriced_amount": 0, "events": 1,
                    }
                ],
            )  # fmt: skip
    finally:
        await async_engine.dispose()
    events.append(later)
    assert (stored(read(url, detailed_query), 6), stored(read(url, totals_query), 4)) == expected(
        events
    ), "what the engine adds lands on the rows the migration built"

    migrate(url, "0005", down=True)
    hourly = {
        (key[0], key[1], key[3], key[4], key[5]): value
        for key, value in expected(events)[0].items()
        if key[2] == 60
    }
    restored = stored(
        (
            (*row[:2], 60, *row[2:])
            for row in read(
                url,
                f"SELECT organization_id, resource, hour, model, action, {sums} FROM usage_rollups",
            )
        ),
        6,
    )
    assert {(k[0], k[1], k[3], k[4], k[5]): v for k, v in restored.items()} == hourly
