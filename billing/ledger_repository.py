"""SQL of billing's bookkeeping: settings, plan changes, provider events, signing keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import (
    OrganizationSettings,
    OverageReport,
    PlanChange,
    ProviderEvent,
    SigningKey,
)
from core.db import dialect_insert

_events = ProviderEvent.__table__  # type: ignore[attr-defined]
_keys = SigningKey.__table__  # type: ignore[attr-defined]


async def get_settings(session: AsyncSession, organization_id: str) -> OrganizationSettings | None:
    return await session.get(OrganizationSettings, organization_id)


async def find_plan_change(
    session: AsyncSession, organization_id: str, idempotency_key: str
) -> PlanChange | None:
    statement = select(PlanChange).where(
        col(PlanChange.organization_id) == organization_id,
        col(PlanChange.idempotency_key) == idempotency_key,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def first_change_since(
    session: AsyncSession, organization_id: str, since: datetime, until: datetime
) -> PlanChange | None:
    """The earliest change that took effect in [since, until)."""
    statement = (
        select(PlanChange)
        .where(
            col(PlanChange.organization_id) == organization_id,
            col(PlanChange.effective_at) >= since,
            col(PlanChange.effective_at) < until,
            col(PlanChange.timing) == "now",
        )
        .order_by(col(PlanChange.effective_at), col(PlanChange.made_at))
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def scheduled_change(session: AsyncSession, organization_id: str) -> PlanChange | None:
    """The change scheduled for the end of a period, if one is (the latest scheduled)."""
    statement = (
        select(PlanChange)
        .where(
            col(PlanChange.organization_id) == organization_id,
            col(PlanChange.status) == "scheduled",
        )
        .order_by(col(PlanChange.made_at).desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def pending_overage_reports(
    session: AsyncSession, organization_id: str
) -> list[OverageReport]:
    """The organization's overage reports not yet accepted by the provider, oldest first."""
    statement = (
        select(OverageReport)
        .where(
            col(OverageReport.organization_id) == organization_id,
            col(OverageReport.status) == "pending",
        )
        .order_by(col(OverageReport.period_start), col(OverageReport.resource))
    )
    return list((await session.execute(statement)).scalars().all())


async def pending_plan_changes(session: AsyncSession, organization_id: str) -> list[PlanChange]:
    """The organization's plan changes whose provider step has not completed."""
    statement = select(PlanChange).where(
        col(PlanChange.organization_id) == organization_id, col(PlanChange.status) == "pending"
    )
    return list((await session.execute(statement)).scalars().all())


async def record_event(
    session: AsyncSession,
    event_id: str,
    event_type: str,
    organization_id: str | None,
    created_at: datetime,
    handled_at: datetime,
) -> bool:
    """Mark an event handled; False when it already was (nothing written then)."""
    statement = (
        dialect_insert(session)(_events)
        .values(
            id=event_id,
            type=event_type,
            organization_id=organization_id,
            created_at=created_at,
            handled_at=handled_at,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(_events.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def signing_key(session: AsyncSession, name: str, candidate: str, at: datetime) -> str:
    """The stored key called `name`; `candidate` becomes it when none exists yet, so
    concurrent workers all end up with the first one written."""
    await session.execute(
        dialect_insert(session)(_keys)
        .values(name=name, secret=candidate, created_at=at)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    statement = select(SigningKey.secret).where(col(SigningKey.name) == name)  # type: ignore[call-overload]
    return str((await session.execute(statement)).scalar_one())
