"""All SQL of the limit engine: counters under lock, events, reservations, rollups, alerts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    String,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import dialect_insert
from limits.models import (
    UsageAlert,
    UsageAllowance,
    UsageCounter,
    UsageEventRow,
    UsageReservation,
    UsageRollup,
)

_counters = UsageCounter.__table__  # type: ignore[attr-defined]
_events = UsageEventRow.__table__  # type: ignore[attr-defined]
_reservations = UsageReservation.__table__  # type: ignore[attr-defined]
_rollups = UsageRollup.__table__  # type: ignore[attr-defined]
_alerts = UsageAlert.__table__  # type: ignore[attr-defined]
_allowances = UsageAllowance.__table__  # type: ignore[attr-defined]

CounterKey = tuple[str, datetime]


@dataclass
class CounterState:
    """A counter as read under lock: `used`, `reserved` by held reservations, and `drawn`,
    the part of `used` drawn from the organization's extra allowance (top-ups)."""

    used: int
    reserved: int
    drawn: int = 0


@dataclass(frozen=True)
class StoredEvent:
    """What a replay needs of the original event."""

    resource: str
    amount: int
    used_after: int
    limit_value: int | None


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _counter_filter(organization_id: str, keys: Sequence[CounterKey]) -> Any:
    c = _counters.c
    return and_(
        c.organization_id == organization_id,
        or_(*(and_(c.resource == name, c.period_start == start) for name, start in keys)),
    )


async def lock_counters(
    session: AsyncSession, organization_id: str, keys: Sequence[CounterKey]
) -> dict[CounterKey, CounterState]:
    """Create missing counters and lock all of them, in key order, in one statement.

    A no-op `ON CONFLICT DO UPDATE` takes the row lock (PostgreSQL); on SQLite the write
    transaction already holds the database's write lock.
    """
    ordered = sorted(set(keys))
    statement = (
        dialect_insert(session)(_counters)
        .values(
            [
                {
                    "organization_id": organization_id,
                    "resource": name,
                    "period_start": start,
                    "used": 0,
                    "reserved": 0,
                    "drawn": 0,
                }
                for name, start in ordered
            ]
        )
        .on_conflict_do_update(
            index_elements=["organization_id", "resource", "period_start"],
            set_={"used": _counters.c.used},
        )
        .returning(
            _counters.c.resource,
            _counters.c.period_start,
            _counters.c.used,
            _counters.c.reserved,
            _counters.c.drawn,
        )
    )
    return _states((await session.execute(statement)).all())


def _states(rows: Iterable[Any]) -> dict[CounterKey, CounterState]:
    return {
        (name, start): CounterState(int(used), int(held), int(drawn))
        for name, start, used, held, drawn in rows
    }


async def read_counters(
    session: AsyncSession, organization_id: str, keys: Sequence[CounterKey]
) -> dict[CounterKey, CounterState]:
    """Counters as they stand, without a lock; missing ones read as zero."""
    c = _counters.c
    rows = (
        await session.execute(
            select(c.resource, c.period_start, c.used, c.reserved, c.drawn).where(
                _counter_filter(organization_id, keys)
            )
        )
    ).all()
    found = _states(rows)
    return {key: found.get(key, CounterState(0, 0)) for key in keys}


async def write_counters(
    session: AsyncSession, organization_id: str, states: Mapping[CounterKey, CounterState]
) -> None:
    """Store counters' new values (their rows are locked by this transaction)."""
    if not states:
        return
    c = _counters.c
    statement = (
        update(_counters)
        .where(
            c.organization_id == bindparam("o"),
            c.resource == bindparam("r"),
            c.period_start == bindparam("p"),
        )
        .values(used=bindparam("u"), reserved=bindparam("h"), drawn=bindparam("d"))
    )
    connection = await session.connection()
    await connection.execute(
        statement,
        [
            {
                "o": organization_id,
                "r": name,
                "p": start,
                "u": state.used,
                "h": state.reserved,
                "d": state.drawn,
            }
            for (name, start), state in states.items()
        ],
    )


async def meter_states(
    session: AsyncSession, organization_id: str, period_starts: Sequence[datetime]
) -> tuple[dict[CounterKey, CounterState], dict[str, int]]:
    """Every counter of an organization in the given periods, and what remains of each of its
    extra allowances by resource, in one statement."""
    c, a = _counters.c, _allowances.c
    counters = select(
        literal("counter").label("row"), c.resource, c.period_start, c.used, c.reserved, c.drawn
    ).where(c.organization_id == organization_id, c.period_start.in_(list(period_starts)))
    allowances = select(
        literal("allowance"),
        a.resource,
        cast(null(), c.period_start.type),
        a.remaining,
        literal(0),
        literal(0),
    ).where(a.organization_id == organization_id)
    rows = (await session.execute(union_all(counters, allowances))).all()
    states = _states(row[1:] for row in rows if row[0] == "counter")
    return states, {row[1]: int(row[3]) for row in rows if row[0] == "allowance"}


async def allowance(
    session: AsyncSession, organization_id: str, resource: str, *, lock: bool
) -> int:
    """What remains of an organization's extra allowance on a resource (0 without one); with
    `lock`, its row stays locked until the transaction ends (taken after the counters')."""
    a = _allowances.c
    statement = select(a.remaining).where(
        a.organization_id == organization_id, a.resource == resource
    )
    if lock:
        statement = statement.with_for_update()
    remaining = (await session.execute(statement)).scalar_one_or_none()
    return 0 if remaining is None else int(remaining)


async def write_allowances(
    session: AsyncSession, organization_id: str, remaining: Mapping[str, int], now: datetime
) -> None:
    """Store what remains of allowances drawn on (their rows are locked by this transaction)."""
    a = _allowances.c
    for resource, left in remaining.items():
        await session.execute(
            update(_allowances)
            .where(a.organization_id == organization_id, a.resource == resource)
            .values(remaining=left, updated_at=now)
        )


async def grant_allowance(
    session: AsyncSession, organization_id: str, resource: str, amount: int, now: datetime
) -> int:
    """Add `amount` to an organization's extra allowance on a resource (creating it); returns
    what remains after the grant."""
    statement = dialect_insert(session)(_allowances).values(
        organization_id=organization_id,
        resource=resource,
        remaining=amount,
        granted=amount,
        updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "resource"],
        set_={
            "remaining": _allowances.c.remaining + statement.excluded.remaining,
            "granted": _allowances.c.granted + statement.excluded.granted,
            "updated_at": statement.excluded.updated_at,
        },
    ).returning(_allowances.c.remaining)
    return int((await session.execute(statement)).scalar_one())


async def find_events(
    session: AsyncSession, organization_id: str, keys: Iterable[str]
) -> dict[str, StoredEvent]:
    e = _events.c
    wanted = sorted(set(keys))
    if _postgres(session):
        matching: Any = e.idempotency_key == any_(bindparam("keys", wanted, ARRAY(String)))
    else:
        matching = e.idempotency_key.in_(wanted)
    result = await session.execute(
        select(e.idempotency_key, e.resource, e.amount, e.used_after, e.limit_value).where(
            e.organization_id == organization_id, matching
        )
    )
    return {
        key: StoredEvent(resource, int(amount), int(after), None if cap is None else int(cap))
        for key, resource, amount, after, cap in result
    }


_EVENT_COLUMNS = (
    "id, organization_id, resource, idempotency_key, amount, period_start, occurred_at, "
    "recorded_at, used_after, limit_value, model, action, cost_micros, attributes"
)
_ROLLUP_COLUMNS = (
    "organization_id, resource, hour, model, action, amount, cost_micros, unpriced_amount, events"
)
_INSERT_EVENTS = text(
    f"INSERT INTO usage_events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_events, CAST(:rows AS json)) "
    "ON CONFLICT (organization_id, idempotency_key) DO NOTHING RETURNING idempotency_key"
)
USAGE_CHANNEL = "tally_usage"
"""The PostgreSQL channel told, at commit, the id of each organization whose usage changed."""
_ADD_ROLLUPS = text(
    f"WITH notified AS (SELECT pg_notify('{USAGE_CHANNEL}', CAST(:organization_id AS text))) "
    f"INSERT INTO usage_rollups ({_ROLLUP_COLUMNS}) SELECT {_ROLLUP_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_rollups, CAST(:rows AS json)), notified "
    "ON CONFLICT (organization_id, resource, hour, model, action) DO UPDATE SET "
    "amount = usage_rollups.amount + excluded.amount, "
    "cost_micros = usage_rollups.cost_micros + excluded.cost_micros, "
    "unpriced_amount = usage_rollups.unpriced_amount + excluded.unpriced_amount, "
    "events = usage_rollups.events + excluded.events"
)


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as one JSON document: on PostgreSQL a bulk statement takes a single parameter,
    so neither its text nor its binding grows with the number of rows."""
    return json.dumps(list(rows), default=str, separators=(",", ":"))


async def insert_events(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert events whose idempotency keys are new; returns the keys inserted."""
    if not rows:
        return set()
    if _postgres(session):
        result = await session.execute(_INSERT_EVENTS, {"rows": _json_rows(rows)})
        return set(result.scalars().all())
    statement = (
        dialect_insert(session)(_events)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_events.c.idempotency_key)
    )
    result = await session.execute(statement, list(rows))
    return set(result.scalars().all())


async def add_rollups(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add hourly totals to the rollups, creating rows as needed. On PostgreSQL the same
    statement notifies `USAGE_CHANNEL` of the organization (delivered at commit, so only
    committed usage is announced; no extra round trip). The rows are one organization's."""
    if not rows:
        return
    if _postgres(session):
        parameters = {"rows": _json_rows(rows), "organization_id": rows[0]["organization_id"]}
        await session.execute(_ADD_ROLLUPS, parameters)
        return
    r = _rollups.c
    statement = dialect_insert(session)(_rollups)
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "resource", "hour", "model", "action"],
        set_={
            "amount": r.amount + statement.excluded.amount,
            "cost_micros": r.cost_micros + statement.excluded.cost_micros,
            "unpriced_amount": r.unpriced_amount + statement.excluded.unpriced_amount,
            "events": r.events + statement.excluded.events,
        },
    )
    connection = await session.connection()
    await connection.execute(statement, list(rows))


async def expire_reservations(
    session: AsyncSession, organization_id: str, key: CounterKey, now: datetime
) -> int:
    """Mark a counter's held reservations that expired; returns the amount they held."""
    r = _reservations.c
    result = await session.execute(
        update(_reservations)
        .where(
            r.organization_id == organization_id,
            r.resource == key[0],
            r.period_start == key[1],
            r.status == "held",
            r.expires_at <= now,
        )
        .values(status="expired")
        .returning(r.amount)
    )
    return sum(int(amount) for amount in result.scalars())


async def expired_holds(
    session: AsyncSession, organization_id: str, now: datetime
) -> dict[CounterKey, int]:
    """The amounts still counted as reserved though their reservations expired."""
    r = _reservations.c
    result = await session.execute(
        select(r.resource, r.period_start, func.sum(r.amount))
        .where(r.organization_id == organization_id, r.status == "held", r.expires_at <= now)
        .group_by(r.resource, r.period_start)
    )
    return {(name, start): int(total) for name, start, total in result}


async def find_reservation(
    session: AsyncSession, organization_id: str, *, id: str | None = None, key: str | None = None
) -> UsageReservation | None:
    statement = select(UsageReservation).where(
        col(UsageReservation.organization_id) == organization_id
    )
    if id is not None:
        statement = statement.where(col(UsageReservation.id) == id)
    if key is not None:
        statement = statement.where(col(UsageReservation.idempotency_key) == key)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_reservation(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    statement = (
        dialect_insert(session)(_reservations)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_reservations.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def settle_reservation(
    session: AsyncSession, reservation_id: str, status: str, unexpired_at: datetime | None
) -> bool:
    """Move a held reservation (still unexpired at `unexpired_at`, when given) to `status`;
    False when it was not held."""
    r = _reservations.c
    statement = update(_reservations).where(r.id == reservation_id, r.status == "held")
    if unexpired_at is not None:
        statement = statement.where(r.expires_at > unexpired_at)
    result = await session.execute(statement.values(status=status).returning(r.id))
    return result.scalar_one_or_none() is not None


async def insert_alerts(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, int]]:
    """Record thresholds crossed; returns the (resource, kind, threshold) triples that are
    new (a row without `kind` is a "limit" alert)."""
    inserted: list[tuple[str, str, int]] = []
    for row in rows:
        statement = (
            dialect_insert(session)(_alerts)
            .values(**{"kind": "limit", **row})
            .on_conflict_do_nothing()
            .returning(_alerts.c.resource, _alerts.c.kind, _alerts.c.threshold)
        )
        inserted.extend(
            (name, kind, int(t)) for name, kind, t in (await session.execute(statement)).all()
        )
    return inserted


async def list_alerts(
    session: AsyncSession, organization_id: str, period_starts: Sequence[datetime]
) -> Sequence[UsageAlert]:
    statement = (
        select(UsageAlert)
        .where(
            col(UsageAlert.organization_id) == organization_id,
            col(UsageAlert.period_start).in_(list(period_starts)),
        )
        .order_by(col(UsageAlert.crossed_at).desc(), col(UsageAlert.threshold).desc())
    )
    return (await session.execute(statement)).scalars().all()


RollupTotal = tuple[datetime, str, str, int, int, int]

_TRUNC = {"hour": "hour", "day": "day", "week": "week", "month": "month"}


async def rollup_totals(
    session: AsyncSession,
    organization_id: str,
    resource: str,
    start: datetime,
    end: datetime,
    granularity: str,
    timezone: str,
) -> list[RollupTotal]:
    """Rollups summed per bucket, model and action: (bucket, model, action, amount, cost,
    unpriced amount). On PostgreSQL the bucket is the local start (naive) in `timezone`; on
    SQLite it is the UTC hour, and the caller buckets it."""
    r = _rollups.c
    window = (
        r.organization_id == organization_id,
        r.resource == resource,
        r.hour >= start,
        r.hour < end,
    )
    if session.get_bind().dialect.name == "postgresql":
        bucket: Any = func.date_trunc(_TRUNC[granularity], func.timezone(timezone, r.hour))
    else:
        bucket = r.hour
    statement = (
        select(
            bucket.label("bucket"),
            r.model,
            r.action,
            func.sum(r.amount),
            func.sum(r.cost_micros),
            func.sum(r.unpriced_amount),
        )
        .where(*window)
        .group_by(bucket, r.model, r.action)
    )
    return [
        (when, model, action, int(amount), int(cost), int(unpriced))
        for when, model, action, amount, cost, unpriced in await session.execute(statement)
    ]
