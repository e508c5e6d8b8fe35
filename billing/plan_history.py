"""The plan in force at any instant: what prices and limits a period's usage.

Every path that puts a plan in force (opening an account, a change applied now, a scheduled
change reached at a period's close) records it here in the same transaction, so a period is
billed and limited by the plan that was in force during it, not the plan current when it is
billed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import PlanHistory


async def record(
    session: AsyncSession,
    organization_id: str,
    plan_id: str,
    effective_at: datetime,
    change_id: str | None = None,
) -> PlanHistory:
    """Put `plan_id` in force from `effective_at`; a plan recorded for the same instant
    before (two changes at once) is replaced, so the last one made is the one in force.
    Callers hold the organization's row lock, so records of one organization never race."""
    statement = select(PlanHistory).where(
        col(PlanHistory.organization_id) == organization_id,
        col(PlanHistory.effective_at) == effective_at,
    )
    row = (await session.execute(statement)).scalars().first()
    if row is None:
        row = PlanHistory(organization_id=organization_id, effective_at=effective_at, plan_id="")
    row.plan_id, row.change_id = plan_id, change_id
    session.add(row)
    await session.flush()
    return row


async def plan_at(session: AsyncSession, organization_id: str, at: datetime) -> str | None:
    """The plan in force at `at` (the last one effective at or before it), or None when the
    organization had none yet."""
    statement = (
        select(PlanHistory.plan_id)  # type: ignore[call-overload]
        .where(
            col(PlanHistory.organization_id) == organization_id,
            col(PlanHistory.effective_at) <= at,
        )
        .order_by(col(PlanHistory.effective_at).desc())
        .limit(1)
    )
    found = (await session.execute(statement)).scalar_one_or_none()
    return None if found is None else str(found)
