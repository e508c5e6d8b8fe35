"""SQL of billing: subscriptions, invoices and their numbering."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from billing.models import Invoice, InvoiceCounter, Subscription
from core.db import dialect_insert
from core.orgs import Organization

_counters = InvoiceCounter.__table__  # type: ignore[attr-defined]


async def add(session: AsyncSession, *rows: SQLModel) -> None:
    session.add_all(rows)
    await session.flush()


async def get_subscription(session: AsyncSession, organization_id: str) -> Subscription | None:
    return await session.get(Subscription, organization_id)


async def lock_subscription(session: AsyncSession, organization_id: str) -> Subscription | None:
    """The subscription row, locked until the transaction ends (PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serializes writers)."""
    statement = (
        select(Subscription)
        .where(col(Subscription.organization_id) == organization_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_organization(session: AsyncSession, organization_id: str) -> Organization | None:
    statement = (
        select(Organization)
        .where(col(Organization.id) == organization_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def find_subscription_by_customer(
    session: AsyncSession, customer_ref: str
) -> Subscription | None:
    statement = select(Subscription).where(col(Subscription.customer_ref) == customer_ref)
    return (await session.execute(statement.limit(1))).scalar_one_or_none()


async def organizations_to_close(
    session: AsyncSession,
) -> Sequence[tuple[Organization, Subscription]]:
    statement = (
        select(Organization, Subscription)
        .join(Subscription, col(Subscription.organization_id) == col(Organization.id))
        .order_by(col(Organization.id))
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


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


async def get_invoice(
    session: AsyncSession, organization_id: str, invoice_id: str
) -> Invoice | None:
    statement = select(Invoice).where(
        col(Invoice.organization_id) == organization_id, col(Invoice.id) == invoice_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def find_invoice_by_source(
    session: AsyncSession, organization_id: str, source: str
) -> Invoice | None:
    statement = select(Invoice).where(
        col(Invoice.organization_id) == organization_id, col(Invoice.source) == source
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def find_invoice_by_ref(
    session: AsyncSession, organization_id: str, provider_ref: str
) -> Invoice | None:
    statement = select(Invoice).where(
        col(Invoice.organization_id) == organization_id,
        col(Invoice.provider_ref) == provider_ref,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def next_invoice_number(session: AsyncSession, series: str) -> int:
    """The seller's next number in `series`, in the caller's transaction.

    One atomic UPDATE ... RETURNING: the row stays locked until the transaction ends, so
    concurrent issuers (any organization) queue, and a rolled-back invoice gives its number
    back (no gaps).
    """
    await session.execute(
        dialect_insert(session)(_counters)
        .values(name=series, last_value=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    statement = (
        update(_counters)
        .where(_counters.c.name == series)
        .values(last_value=_counters.c.last_value + 1)
        .returning(_counters.c.last_value)
    )
    return int((await session.execute(statement)).scalar_one())


async def last_period_invoice(session: AsyncSession, organization_id: str) -> Invoice | None:
    """The organization's latest local invoice for a billing period (none before the first
    period closes)."""
    statement = (
        select(Invoice)
        .where(
            col(Invoice.organization_id) == organization_id,
            col(Invoice.provider) == "local",
            col(Invoice.kind) == "invoice",
            col(Invoice.source).startswith("period:"),
        )
        .order_by(col(Invoice.period_start).desc(), col(Invoice.id).desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def credit_notes_of(session: AsyncSession, invoice_id: str) -> Sequence[Invoice]:
    """The credit notes issued against an invoice."""
    statement = select(Invoice).where(
        col(Invoice.credited_invoice_id) == invoice_id, col(Invoice.kind) == "credit_note"
    )
    return (await session.execute(statement)).scalars().all()


async def find_local_invoice_by_number(session: AsyncSession, number: str) -> Invoice | None:
    """A local document by its number (unique across the seller's organizations)."""
    statement = select(Invoice).where(
        col(Invoice.provider) == "local", col(Invoice.number) == number
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_invoice(
    session: AsyncSession, organization_id: str, invoice_id: str
) -> Invoice | None:
    """An organization's invoice, locked until the transaction ends."""
    statement = (
        select(Invoice)
        .where(col(Invoice.organization_id) == organization_id, col(Invoice.id) == invoice_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def unpaid_local_invoices(
    session: AsyncSession, due_before: date, organization_id: str | None = None
) -> Sequence[Invoice]:
    """Local invoices with something to pay (open or overdue) whose due date is before
    `due_before`, oldest due first; of one organization when given."""
    statement = select(Invoice).where(
        col(Invoice.provider) == "local",
        col(Invoice.kind) == "invoice",
        col(Invoice.status).in_(("open", "overdue")),
        col(Invoice.total_minor) > 0,
        col(Invoice.due_on) < due_before,
    )
    if organization_id is not None:
        statement = statement.where(col(Invoice.organization_id) == organization_id)
    statement = statement.order_by(col(Invoice.due_on), col(Invoice.id))
    return (await session.execute(statement)).scalars().all()
