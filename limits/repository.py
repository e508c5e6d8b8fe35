"""All SQL of the limit engine: counters under lock, events, reservations, rollups, alerts."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Integer,
    SmallInteger,
    String,
    and_,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import dialect_insert
from limits import event_storage
from limits.models import (
    ROLLUP_GRAINS,
    OrganizationRef,
    UsageAlert,
    UsageAllowance,
    UsageCounter,
    UsageEventEpoch,
    UsageEventRow,
    UsageReservation,
    UsageRollup,
    UsageRollupTotal,
    rollup_bucket,
)

_counters = UsageCounter.__table__  # type: ignore[attr-defined]
_events = UsageEventRow.__table__  # type: ignore[attr-defined]
_refs = OrganizationRef.__table__  # type: ignore[attr-defined]
_epochs = UsageEventEpoch.__table__  # type: ignore[attr-defined]
_reservations = UsageReservation.__table__  # type: ignore[attr-defined]
_rollups = UsageRollup.__table__  # type: ignore[attr-defined]
_totals = UsageRollupTotal.__table__  # type: ignore[attr-defined]
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


def _ref(organization_id: str) -> Any:
    """The organization's `OrganizationRef`, as a subquery of the statement that needs it."""
    return select(_refs.c.ref).where(_refs.c.organization_id == organization_id).scalar_subquery()


async def add_organization_ref(session: AsyncSession, organization_id: str) -> None:
    """Give an organization its ref (`OrganizationRef`), when it opens; none twice."""
    await session.execute(
        dialect_insert(session)(_refs)
        .values(organization_id=organization_id)
        .on_conflict_do_nothing(index_elements=["organization_id"])
    )


async def find_events(
    session: AsyncSession, organization_id: str, keys: Iterable[str]
) -> dict[str, StoredEvent]:
    """The organization's recorded events among `keys` (in any epoch), by key."""
    e = _events.c
    wanted = sorted(set(keys))
    if _postgres(session):
        matching: Any = e.idempotency_key == any_(bindparam("keys", wanted, ARRAY(String)))
    else:
        matching = e.idempotency_key.in_(wanted)
    result = await session.execute(
        select(e.idempotency_key, e.resource, e.amount, e.used_after, e.limit_value).where(
            e.organization_ref == _ref(organization_id), matching
        )
    )
    return {
        key: StoredEvent(resource, int(amount), int(after), None if cap is None else int(cap))
        for key, resource, amount, after, cap in result
    }


_EVENT_FIELDS = (
    "amount", "used_after", "limit_value", "cost_micros", "occurred_at", "period_start",
    "resource", "idempotency_key", "model", "action", "attributes",
)  # fmt: skip
"""What an event's row takes from the row given to `insert_events` (the rest: its
organization's ref and the current epoch)."""
_EVENT_COLUMNS = ", ".join((*_EVENT_FIELDS, "organization_ref", "epoch"))
_ROLLUP_COLUMNS = (
    "organization_id, resource, grain, bucket, model, action, amount, cost_micros, "
    "unpriced_amount, events"
)
_ROLLUP_TOTAL_COLUMNS = (
    "organization_id, resource, grain, bucket, amount, cost_micros, unpriced_amount, events"
)
_ORGANIZATION_REF = "(SELECT ref FROM organization_refs WHERE organization_id = :organization_id)"
_INSERT_EVENTS = text(
    f"INSERT INTO usage_events ({_EVENT_COLUMNS}) "
    f"SELECT {', '.join(f'j.{name}' for name in _EVENT_FIELDS)}, {_ORGANIZATION_REF}, "
    "(SELECT max(epoch) FROM usage_event_epochs) "
    "FROM json_populate_recordset(NULL::usage_events, CAST(:rows AS json)) AS j "
    "WHERE NOT EXISTS (SELECT FROM usage_events AS s "
    f"WHERE s.organization_ref = {_ORGANIZATION_REF} AND s.idempotency_key = j.idempotency_key) "
    "ON CONFLICT (organization_ref, idempotency_key, epoch) DO NOTHING RETURNING idempotency_key"
)
USAGE_CHANNEL = "tally_usage"
"""The PostgreSQL channel told the id of each organization whose usage changed
(`announce_usage`, sent by `limits.notify` after the change committed)."""
_SUMS = (
    "amount = {table}.amount + excluded.amount, "
    "cost_micros = {table}.cost_micros + excluded.cost_micros, "
    "unpriced_amount = {table}.unpriced_amount + excluded.unpriced_amount, "
    "events = {table}.events + excluded.events"
)
_ADD_ROLLUPS = text(
    f"WITH detailed AS (INSERT INTO usage_rollups ({_ROLLUP_COLUMNS}) SELECT {_ROLLUP_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_rollups, CAST(:detailed AS json)) "
    "ON CONFLICT (organization_id, resource, grain, bucket, model, action) DO UPDATE SET "
    + _SUMS.format(table="usage_rollups")
    + f"), totals AS (INSERT INTO usage_rollup_totals ({_ROLLUP_TOTAL_COLUMNS}) "
    f"SELECT {_ROLLUP_TOTAL_COLUMNS} "
    "FROM json_populate_recordset(NULL::usage_rollup_totals, CAST(:totals AS json)) "
    "ON CONFLICT (organization_id, resource, grain, bucket) DO UPDATE SET "
    + _SUMS.format(table="usage_rollup_totals")
    + ") SELECT 1"
)


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as one JSON document: on PostgreSQL a bulk statement takes a single parameter,
    so neither its text nor its binding grows with the number of rows."""
    return json.dumps(list(rows), default=str, separators=(",", ":"))


def _stored_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as `usage_events` keeps them: the period's first day, the attributes that the
    columns do not hold."""
    return [
        {
            **{name: row[name] for name in _EVENT_FIELDS},
            "period_start": row["period_start"].astimezone(UTC).date(),
            "attributes": UsageEventRow.stored_attributes(
                row["attributes"], row["model"], row["action"]
            ),
        }
        for row in rows
    ]


async def insert_events(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert the events whose idempotency keys the organization has not recorded in any
    epoch; returns the keys inserted. The rows are one organization's (`organization_id`),
    with the event's attributes whole (the row keeps those its columns do not hold).

    On PostgreSQL, under the epoch lock (`event_storage.share_epoch`), one statement: keys
    committed in earlier epochs are seen, and one being inserted by a concurrent transaction
    (then in this epoch) is found by the unique index (`ON CONFLICT DO NOTHING`). On SQLite the
    transaction already has the database to itself."""
    if not rows:
        return set()
    organization_id = rows[0]["organization_id"]
    if _postgres(session):
        await event_storage.share_epoch(session)
        parameters = {"rows": _json_rows(_stored_rows(rows)), "organization_id": organization_id}
        result = await session.execute(_INSERT_EVENTS, parameters)
        return set(result.scalars().all())
    recorded = await find_events(session, organization_id, (row["idempotency_key"] for row in rows))
    fresh = [row for row in _stored_rows(rows) if row["idempotency_key"] not in recorded]
    if not fresh:
        return set()
    ref, epoch = (
        await session.execute(
            select(_ref(organization_id), select(func.max(_epochs.c.epoch)).scalar_subquery())
        )
    ).one()
    statement = (
        dialect_insert(session)(_events)
        .on_conflict_do_nothing()
        .returning(_events.c.idempotency_key)
    )
    result = await session.execute(
        statement, [{**row, "organization_ref": ref, "epoch": epoch} for row in fresh]
    )
    return set(result.scalars().all())


_SUMMED = ("amount", "cost_micros", "unpriced_amount", "events")
_TOTAL_KEY = ("organization_id", "resource", "grain", "bucket")
_DETAILED_KEY = (*_TOTAL_KEY, "model", "action")


def _grain_rows(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Quarter-hour rows added up at every grain of `ROLLUP_GRAINS`: the rows of
    `usage_rollups` and, summed over models and actions, those of `usage_rollup_totals`."""
    detailed: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        sums = [row[column] for column in _SUMMED]
        for grain in ROLLUP_GRAINS:
            bucket = rollup_bucket(row["bucket"], grain)
            key = (row["organization_id"], row["resource"], grain, bucket)
            for summed in (detailed[(*key, row["model"], row["action"])], totals[key]):
                for index, value in enumerate(sums):
                    summed[index] += value
    return (
        [dict(zip((*_DETAILED_KEY, *_SUMMED), (*k, *v), strict=True)) for k, v in detailed.items()],
        [dict(zip((*_TOTAL_KEY, *_SUMMED), (*k, *v), strict=True)) for k, v in totals.items()],
    )


async def add_rollups(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add quarter-hour rows (organization_id, resource, bucket: the quarter hour's UTC start,
    model, action, amount, cost_micros, unpriced_amount, events) to the rollups of every
    grain and to their totals, creating rows as needed: on PostgreSQL in one statement."""
    if not rows:
        return
    detailed, totals = _grain_rows(rows)
    if _postgres(session):
        parameters = {"detailed": _json_rows(detailed), "totals": _json_rows(totals)}
        await session.execute(_ADD_ROLLUPS, parameters)
        return
    connection = await session.connection()
    for table, key, values in ((_rollups, _DETAILED_KEY, detailed), (_totals, _TOTAL_KEY, totals)):
        statement = dialect_insert(session)(table)
        statement = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={column: table.c[column] + statement.excluded[column] for column in _SUMMED},
        )
        await connection.execute(statement, values)


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


async def insert_alerts(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Record thresholds crossed; returns the positions in `rows` of those that are new (a
    row without `kind` is a "limit" alert)."""
    inserted: list[int] = []
    for index, row in enumerate(rows):
        statement = (
            dialect_insert(session)(_alerts)
            .values(**{"kind": "limit", **row})
            .on_conflict_do_nothing()
            .returning(_alerts.c.threshold)
        )
        if (await session.execute(statement)).scalar_one_or_none() is not None:
            inserted.append(index)
    return inserted


async def list_alerts(
    session: AsyncSession, organization_id: str, since: datetime
) -> Sequence[UsageAlert]:
    """The alerts of periods starting at or after `since` and, gauges' alerts being keyed by
    the instant they crossed, those of gauges crossed since; newest first."""
    statement = (
        select(UsageAlert)
        .where(
            col(UsageAlert.organization_id) == organization_id,
            col(UsageAlert.period_start) >= since,
        )
        .order_by(col(UsageAlert.crossed_at).desc(), col(UsageAlert.threshold).desc())
    )
    return (await session.execute(statement)).scalars().all()


class RollupSpan(NamedTuple):
    """The rollup rows of one grain whose buckets start in [start, end), in minutes from the
    Unix epoch, counted towards `slot` (the index of a bucket of the answer)."""

    slot: int
    grain: int
    start: int
    end: int


def _span_table(postgres: bool) -> Any:
    """The spans, bound as one JSON document `spans` (`RollupSpan`s as objects), as a table
    (slot, grain, low, high) whose bounds compare with the stored buckets: timestamps on
    PostgreSQL, on SQLite the text it stores them as."""
    document = bindparam("spans", type_=String)
    if postgres:
        raw = (
            func.json_to_recordset(cast(document, JSON))
            .table_valued(
                column("slot", Integer),
                column("grain", SmallInteger),
                column("start", BigInteger),
                column("end", BigInteger),
            )
            .render_derived(name="raw", with_types=True)
        )
        low, high = (func.to_timestamp(raw.c[name] * 60) for name in ("start", "end"))
        return select(raw.c.slot, raw.c.grain, low.label("low"), high.label("high")).subquery(
            "spans"
        )
    value = func.json_each(document).table_valued("value").c.value
    slot, grain, start, end = (func.json_extract(value, f"$.{name}") for name in RollupSpan._fields)
    stored_low, stored_high = (
        func.strftime("%Y-%m-%d %H:%M:%S", minutes * 60, "unixepoch").concat(".000000")
        for minutes in (start, end)
    )
    return select(
        slot.label("slot"), grain.label("grain"), stored_low.label("low"), stored_high.label("high")
    ).subquery("spans")


def _summed_in_spans(postgres: bool, table: Any, keys: tuple[str, ...]) -> Any:
    """The statement summing `table`'s rows of an organization's resource (bound as
    `organization_id` and `resource`) in the spans (`spans`), by slot or, given `keys`, by
    those columns: (slot or keys..., amount, cost_micros, unpriced_amount).

    On PostgreSQL each span is summed in a LATERAL subquery, one range scan of the primary
    key per span (joined plainly, the planner hashes on the grain and filters every row of
    the organization; an empty span gives NULL sums); SQLite's planner loops over the spans
    by itself. Built once per database and table: only the bound values change."""
    spans = _span_table(postgres)
    condition = and_(
        table.c.organization_id == bindparam("organization_id"),
        table.c.resource == bindparam("resource"),
        table.c.grain == spans.c.grain,
        table.c.bucket >= spans.c.low,
        table.c.bucket < spans.c.high,
    )
    sums: tuple[str, ...] = ("amount", "cost_micros", "unpriced_amount")
    if postgres:
        grouping = [table.c[key] for key in keys]
        summed = (func.sum(table.c[name]).label(name) for name in sums)
        per_span = select(*grouping, *summed).where(condition).group_by(*grouping).lateral("sums")
        joined, rows = spans.join(per_span, true()), per_span.c
    else:
        joined, rows = spans.join(table, condition), table.c
    by = [rows[key] for key in keys] if keys else [spans.c.slot]
    return select(*by, *(func.sum(rows[name]) for name in sums)).select_from(joined).group_by(*by)


_TOTALS_IN_SPANS = {postgres: _summed_in_spans(postgres, _totals, ()) for postgres in (False, True)}
_BREAKDOWN_IN_SPANS = {
    postgres: _summed_in_spans(postgres, _rollups, ("model", "action"))
    for postgres in (False, True)
}


async def _sum_in_spans(
    session: AsyncSession,
    statements: Mapping[bool, Any],
    organization_id: str,
    resource: str,
    spans: Sequence[RollupSpan],
) -> list[Any]:
    parameters = {
        "spans": json.dumps([span._asdict() for span in spans], separators=(",", ":")),
        "organization_id": organization_id,
        "resource": resource,
    }
    return list(await session.execute(statements[_postgres(session)], parameters))


async def rollup_totals(
    session: AsyncSession, organization_id: str, resource: str, spans: Sequence[RollupSpan]
) -> dict[int, tuple[int, int]]:
    """(amount, cost in micros) per slot, from `usage_rollup_totals` in `spans`; a slot
    without usage is absent."""
    rows = await _sum_in_spans(session, _TOTALS_IN_SPANS, organization_id, resource, spans)
    return {
        int(slot): (int(amount), int(cost)) for slot, amount, cost, _ in rows if amount is not None
    }


RollupBreakdown = tuple[str, str, int, int, int]


async def rollup_breakdown(
    session: AsyncSession, organization_id: str, resource: str, spans: Sequence[RollupSpan]
) -> list[RollupBreakdown]:
    """(model, action, amount, cost in micros, unpriced amount) from `usage_rollups` in
    `spans` (whatever their slots), one row per model and action used."""
    rows = await _sum_in_spans(session, _BREAKDOWN_IN_SPANS, organization_id, resource, spans)
    return [
        (model, action, int(amount), int(cost), int(unpriced))
        for model, action, amount, cost, unpriced in rows
    ]


class GroupKeyRace(Exception):
    """`tally_apply_usage` found an idempotency key of its group recorded meanwhile."""


_APPLY_USAGE_ARGUMENTS = (
    ("organization_id", "text"),
    ("now", "timestamptz"),
    ("e_resource", "text[]"),
    ("e_key", "text[]"),
    ("e_amount", "bigint[]"),
    ("e_period", "timestamptz[]"),
    ("e_occurred", "timestamptz[]"),
    ("e_model", "text[]"),
    ("e_action", "text[]"),
    ("e_cost", "bigint[]"),
    ("e_attributes", "text[]"),
    ("e_reserved", "bigint[]"),
    ("l_resource", "text[]"),
    ("l_limit", "bigint[]"),
    ("l_ceiling", "bigint[]"),
    ("l_resets", "boolean[]"),
    ("l_thresholds", "text[]"),
    ("l_cap", "bigint[]"),
)
_APPLY_USAGE: dict[int, Any] = {}


def _apply_usage_statement(groups: int) -> Any:
    """One statement calling the ledger function once per group, in the groups' order (the
    branches of a UNION ALL run one after the other), each row tagged with its group."""
    if groups not in _APPLY_USAGE:
        calls = []
        for group in range(groups):
            arguments = ", ".join(
                f"CAST(:{name}_{group} AS {kind})" for name, kind in _APPLY_USAGE_ARGUMENTS
            )
            calls.append(f"SELECT {group} AS g, * FROM tally_apply_usage({arguments})")
        _APPLY_USAGE[groups] = text(" UNION ALL ".join(calls))
    return _APPLY_USAGE[groups]


KEY_RACE_SQLSTATE = "TL001"


async def apply_usage_groups(
    session: AsyncSession, groups: Sequence[Mapping[str, Any]]
) -> list[list[Any]]:
    """Run the ledger function (PostgreSQL only, `migrations/functions`) on each group's
    arrays, in the given order, in one statement: one round trip. Rows of each group:
    (ordinal, status, resource, amount, used, limit, reserved, extra) per event, then
    ("alert:<kind>", resource, threshold, the ordinal of the event that crossed) per alert."""
    parameters = {
        f"{name}_{index}": value
        for index, group in enumerate(groups)
        for name, value in group.items()
    }
    try:
        result = await session.execute(_apply_usage_statement(len(groups)), parameters)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == KEY_RACE_SQLSTATE:
            raise GroupKeyRace() from error
        raise
    rows: list[list[Any]] = [[] for _ in groups]
    for group, *row in result:
        rows[group].append(row)
    return rows


_ANNOUNCE_USAGE = text(
    f"SELECT pg_notify('{USAGE_CHANNEL}', o) FROM unnest(CAST(:ids AS text[])) AS o"
)


async def announce_usage(session: AsyncSession, organization_ids: Sequence[str]) -> None:
    """NOTIFY `USAGE_CHANNEL` of each organization (PostgreSQL; delivered when the session's
    transaction commits: in a read session, as the statement ends)."""
    if organization_ids:
        await session.execute(_ANNOUNCE_USAGE, {"ids": list(organization_ids)})
