"""All SQL of the limit engine: atomic counter updates, events, usage reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from limits.models import UsageCounter, UsageEventRow

_counters = UsageCounter.__table__  # type: ignore[attr-defined]
_events = UsageEventRow.__table__  # type: ignore[attr-defined]


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def add_to_counter(
    session: AsyncSession,
    organization_id: str,
    resource: str,
    period_start: datetime,
    amount: int,
    ceiling: int | None,
) -> int | None:
    """Add `amount` to a counter in one atomic statement and return the new value.

    Returns None, changing nothing, when the result would pass `ceiling` or fall
    below zero. The condition is evaluated on the row as the statement finds it, so
    concurrent writers never pass the ceiling together (no read-then-write).
    """
    row = _counters.c
    conditions: list[ColumnElement[bool]] = []
    if amount > 0 and ceiling is not None:
        conditions.append(row.used + amount <= ceiling)
    if amount < 0:
        conditions.append(row.used + amount >= 0)
    key = and_(
        row.organization_id == organization_id,
        row.resource == resource,
        row.period_start == period_start,
    )
    creatable = amount >= 0 and (ceiling is None or amount <= ceiling)
    if creatable:
        statement = (
            _insert(session)(_counters)
            .values(
                organization_id=organization_id,
                resource=resource,
                period_start=period_start,
                used=amount,
            )
            .on_conflict_do_update(
                index_elements=["organization_id", "resource", "period_start"],
                set_={"used": row.used + amount},
                where=and_(*conditions) if conditions else None,
            )
            .returning(row.used)
        )
    else:
        statement = (
            update(_counters).where(key, *conditions).values(used=row.used + amount)
        ).returning(row.used)
    result = await session.execute(statement)
    value = result.scalar_one_or_none()
    return None if value is None else int(value)


async def counter_value(
    session: AsyncSession, organization_id: str, resource: str, period_start: datetime
) -> int:
    result = await session.execute(
        select(_counters.c.used).where(
            _counters.c.organization_id == organization_id,
            _counters.c.resource == resource,
            _counters.c.period_start == period_start,
        )
    )
    return int(result.scalar_one_or_none() or 0)


async def counters(
    session: AsyncSession, organization_id: str, period_starts: Sequence[datetime]
) -> dict[tuple[str, datetime], int]:
    """Every counter of an organization in the given periods, in one statement."""
    result = await session.execute(
        select(_counters.c.resource, _counters.c.period_start, _counters.c.used).where(
            _counters.c.organization_id == organization_id,
            _counters.c.period_start.in_(list(period_starts)),
        )
    )
    return {(name, start): int(used) for name, start, used in result.all()}


async def insert_event(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Insert an event unless its idempotency key was seen; True when inserted."""
    statement = (
        _insert(session)(_events)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_events.c.id)
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none() is not None


async def find_event(
    session: AsyncSession, organization_id: str, idempotency_key: str
) -> UsageEventRow | None:
    result = await session.execute(
        select(UsageEventRow).where(
            col(UsageEventRow.organization_id) == organization_id,
            col(UsageEventRow.idempotency_key) == idempotency_key,
        )
    )
    return result.scalar_one_or_none()
