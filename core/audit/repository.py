"""SQL for the audit log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.audit.models import AuditEntry


async def add(session: AsyncSession, entry: AuditEntry) -> None:
    session.add(entry)
    await session.flush()


async def page(
    session: AsyncSession, organization_id: str, limit: int, before_id: int | None
) -> Sequence[AuditEntry]:
    """Up to `limit` entries of the organization, newest first, older than `before_id`."""
    statement = select(AuditEntry).where(col(AuditEntry.organization_id) == organization_id)
    if before_id is not None:
        statement = statement.where(col(AuditEntry.id) < before_id)
    statement = statement.order_by(col(AuditEntry.id).desc()).limit(limit)
    return (await session.execute(statement)).scalars().all()
