"""All SQL of top-up purchases: the intent row written first, found again by its key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import TopUpPurchase
from core.db import dialect_insert

_purchases = TopUpPurchase.__table__  # type: ignore[attr-defined]


async def find_purchase(
    session: AsyncSession, organization_id: str, idempotency_key: str, *, lock: bool = False
) -> TopUpPurchase | None:
    """The purchase made with this idempotency key, if any (with `lock`, its row locked)."""
    statement = select(TopUpPurchase).where(
        col(TopUpPurchase.organization_id) == organization_id,
        col(TopUpPurchase.idempotency_key) == idempotency_key,
    )
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_purchase(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Insert a pending purchase; False when its idempotency key was taken meanwhile."""
    statement = (
        dialect_insert(session)(_purchases)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_purchases.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None
