"""SQL of billing: subscriptions and invoices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.models import Invoice, Subscription


async def add(session: AsyncSession, *rows: Subscription | Invoice) -> None:
    session.add_all(rows)
    await session.flush()


async def get_subscription(session: AsyncSession, organization_id: str) -> Subscription | None:
    return await session.get(Subscription, organization_id)


async def list_invoices(
    session: AsyncSession,
    organization_id: str,
    limit: int,
    after: tuple[date, str] | None = None,
) -> Sequence[Invoice]:
    """Newest first; `after` is the (issued_on, id) of the last invoice already seen."""
    statement = select(Invoice).where(col(Invoice.organization_id) == organization_id)
    if after is not None:
        issued_on, invoice_id = after
        statement = statement.where(
            or_(
                col(Invoice.issued_on) < issued_on,
                and_(col(Invoice.issued_on) == issued_on, col(Invoice.id) < invoice_id),
            )
        )
    statement = statement.order_by(
        col(Invoice.issued_on).desc(),
        col(Invoice.id).desc(),
    ).limit(limit)
    return (await session.execute(statement)).scalars().all()
