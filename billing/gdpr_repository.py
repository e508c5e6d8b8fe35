"""SQL for the GDPR export and erasure: reading everything of one organization in pages, and
the bulk updates that erase personal data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import PlanChange, PlanHistory, TopUpPurchase
from core.audit import AuditEntry
from core.auth_cache import forget_on_commit
from core.orgs import ApiKey
from limits.models import OrganizationRef, UsageEventRow


async def usage_events_page(
    session: AsyncSession, organization_id: str, after_key: str | None, limit: int
) -> Sequence[UsageEventRow]:
    """Up to `limit` usage events of the organization in idempotency-key order, after the key
    `after_key` (keyset paging on the table's key, so no page costs more than the first)."""
    e = UsageEventRow.__table__.c  # type: ignore[attr-defined]
    statement = select(UsageEventRow).where(e.organization_ref == _ref(organization_id))
    if after_key is not None:
        statement = statement.where(e.idempotency_key > after_key)
    statement = statement.order_by(e.idempotency_key).limit(limit)
    return (await session.execute(statement)).scalars().all()


def _ref(organization_id: str) -> Any:
    """The organization's `OrganizationRef` (how usage events name it), as a subquery."""
    return (
        select(col(OrganizationRef.ref))
        .where(col(OrganizationRef.organization_id) == organization_id)
        .scalar_subquery()
    )


async def plan_history(session: AsyncSession, organization_id: str) -> Sequence[PlanHistory]:
    """Every plan the organization has been on, oldest first."""
    statement = (
        select(PlanHistory)
        .where(col(PlanHistory.organization_id) == organization_id)
        .order_by(col(PlanHistory.effective_at), col(PlanHistory.id))
    )
    return (await session.execute(statement)).scalars().all()


async def plan_changes(session: AsyncSession, organization_id: str) -> Sequence[PlanChange]:
    """Every plan change asked for, oldest first."""
    statement = (
        select(PlanChange)
        .where(col(PlanChange.organization_id) == organization_id)
        .order_by(col(PlanChange.made_at), col(PlanChange.id))
    )
    return (await session.execute(statement)).scalars().all()


async def topup_purchases(session: AsyncSession, organization_id: str) -> Sequence[TopUpPurchase]:
    """Every top-up bought, oldest first."""
    statement = (
        select(TopUpPurchase)
        .where(col(TopUpPurchase.organization_id) == organization_id)
        .order_by(col(TopUpPurchase.purchased_at), col(TopUpPurchase.id))
    )
    return (await session.execute(statement)).scalars().all()


async def audit_entries_page(
    session: AsyncSession, organization_id: str, after_id: int | None, limit: int
) -> Sequence[AuditEntry]:
    """Up to `limit` audit entries of the organization, oldest first, after the id `after_id`."""
    statement = select(AuditEntry).where(col(AuditEntry.organization_id) == organization_id)
    if after_id is not None:
        statement = statement.where(col(AuditEntry.id) > after_id)
    statement = statement.order_by(col(AuditEntry.id)).limit(limit)
    return (await session.execute(statement)).scalars().all()


async def clear_event_attributes(session: AsyncSession, organization_id: str) -> int:
    """Erase the attributes of every usage event of the organization; how many had some
    (events without any keep their rows untouched)."""
    e = UsageEventRow.__table__.c  # type: ignore[attr-defined]
    result = await session.execute(
        update(UsageEventRow)
        .where(e.organization_ref == _ref(organization_id), e.attributes.is_not(None))
        .values(attributes=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def revoke_all_keys(session: AsyncSession, organization_id: str, at: datetime) -> int:
    """Revoke every key of the organization not revoked yet; how many."""
    forget_on_commit(session, organization_id)
    result = await session.execute(
        update(ApiKey)
        .where(col(ApiKey.organization_id) == organization_id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def forget_audit_authors(session: AsyncSession, organization_id: str) -> None:
    """Remove the members' emails the audit log kept about who made each change."""
    await session.execute(
        update(AuditEntry)
        .where(col(AuditEntry.organization_id) == organization_id)
        .values(member_email=None)
    )
