"""Tables of billing: subscriptions and invoices."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from tally.db import UtcDateTime
from tally.orgs.models import new_id


class Subscription(SQLModel, table=True):
    """An organization's subscription: its state beside the plan in force on the organization."""

    __tablename__ = "subscriptions"

    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), primary_key=True)
    )
    status: str = Field(default="active", max_length=30)
    pending_plan_id: str | None = Field(default=None, max_length=100)
    cancel_at_period_end: bool = Field(default=False)
    started_at: datetime = Field(sa_type=UtcDateTime)


class Invoice(SQLModel, table=True):
    """An invoice as the page lists it; `number` is unique per organization."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        Index("ix_invoices_listing", "organization_id", "issued_on", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False)
    )
    number: str = Field(max_length=40)
    issued_on: date
    total_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(max_length=30)
    period_start: date | None = None
    period_end: date | None = None
    pdf_url: str | None = Field(default=None, max_length=500)
    hosted_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_type=UtcDateTime)
