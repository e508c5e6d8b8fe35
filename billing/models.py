"""Tables of billing: subscriptions, invoices, settings, and the bookkeeping around them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from core.db import UtcDateTime
from core.ids import new_id


class Subscription(SQLModel, table=True):
    """An organization's subscription: its state beside the plan in force on the organization.

    `status` is one of trialing, active, past_due, unpaid, canceled. `billed_through` is the
    end of the last closed billing period (which plan was in force when is in `PlanHistory`);
    `credit_minor` the credit carried from a change that gave back more than it charged.
    `trial_ends_at` ends a trial (no invoice before it); `past_due_since` is when payment
    first failed (the dunning grace counts from it); `canceled_at` ends billing: no period
    starting after it is billed.
    `customer_ref` and `subscription_ref` are the provider's ids; `synced_at` the time of the
    provider's state last applied, so that an older webhook never overwrites a newer one.
    """

    __tablename__ = "subscriptions"

    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), primary_key=True)
    )
    status: str = Field(default="active", max_length=30)
    pending_plan_id: str | None = Field(default=None, max_length=100)
    cancel_at_period_end: bool = Field(default=False)
    started_at: datetime = Field(sa_type=UtcDateTime)
    billed_through: datetime | None = Field(default=None, sa_type=UtcDateTime)
    credit_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    provider: str = Field(default="local", max_length=20)
    customer_ref: str | None = Field(default=None, max_length=100)
    subscription_ref: str | None = Field(default=None, max_length=100)
    synced_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    trial_ends_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    past_due_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    canceled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class PlanHistory(SQLModel, table=True):
    """The plan in force from `effective_at` until the next row's: what prices and limits
    a period's usage, whatever plan is current when the period is billed."""

    __tablename__ = "plan_history"
    __table_args__ = (Index("ix_plan_history_effective", "organization_id", "effective_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False)
    )
    plan_id: str = Field(max_length=100)
    effective_at: datetime = Field(sa_type=UtcDateTime)
    change_id: str | None = Field(default=None, max_length=32)


class Invoice(SQLModel, table=True):
    """An invoice (or a credit note, `kind`) as the page lists it.

    A local document's `number` comes from the seller's one sequence, unique across
    organizations. A local invoice keeps its whole content in `document` (lines, parties, tax)
    so that its PDF and HTML render the same forever; `source` (e.g. "period:2026-03-01")
    makes issuing idempotent. `due_on` and `paid_at` drive dunning; a credit note names the
    invoice it reverses in `credited_invoice_id`. A provider's invoice is mirrored with its
    id in `provider_ref`.
    """

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        UniqueConstraint("organization_id", "source", name="uq_invoices_source"),
        UniqueConstraint("organization_id", "provider_ref", name="uq_invoices_provider_ref"),
        Index("ix_invoices_listing", "organization_id", "issued_on", "id"),
        Index(
            "ux_invoices_local_number",
            "number",
            unique=True,
            sqlite_where=text("provider = 'local'"),
            postgresql_where=text("provider = 'local'"),
        ),
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
    provider: str = Field(default="local", max_length=20)
    source: str | None = Field(default=None, max_length=200)
    provider_ref: str | None = Field(default=None, max_length=100)
    synced_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    document: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    kind: str = Field(default="invoice", max_length=20)
    due_on: date | None = None
    paid_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    credited_invoice_id: str | None = Field(default=None, max_length=32)


class InvoiceCounter(SQLModel, table=True):
    """The seller's last document number in a series (`name`, e.g. "TAL-2026"); incremented
    atomically in the issuing transaction, so numbers have no gaps."""

    __tablename__ = "invoice_counters"

    name: str = Field(primary_key=True, max_length=60)
    last_value: int = Field(sa_column=Column(BigInteger, nullable=False))


class OrganizationSettings(SQLModel, table=True):
    """An organization's billing settings: who is billed, where, under which VAT ID."""

    __tablename__ = "organization_settings"

    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), primary_key=True)
    )
    legal_name: str | None = Field(default=None, max_length=200)
    billing_email: str | None = Field(default=None, max_length=320)
    address_line1: str | None = Field(default=None, max_length=200)
    address_line2: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=2)
    vat_id: str | None = Field(default=None, max_length=20)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class PlanChange(SQLModel, table=True):
    """A plan change; (organization, idempotency key) is unique.

    `status`: "pending" (the intent, written before the provider is called), "applied" (in
    force), "scheduled" (at the period's end), "canceled" (a scheduled change undone) or
    "failed" (the provider refused). `provider_key` is the idempotency key sent to the
    provider, derived from the client's key, so a retry reaches the same provider change.
    """

    __tablename__ = "plan_changes"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key", name="uq_plan_changes_key"),
        Index("ix_plan_changes_made_at", "organization_id", "made_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False)
    )
    idempotency_key: str = Field(max_length=200)
    from_plan_id: str = Field(max_length=100)
    to_plan_id: str = Field(max_length=100)
    timing: str = Field(max_length=20)
    made_at: datetime = Field(sa_type=UtcDateTime)
    effective_at: datetime = Field(sa_type=UtcDateTime)
    invoice_id: str | None = Field(default=None, max_length=32)
    status: str = Field(default="applied", max_length=20)
    provider_key: str | None = Field(default=None, max_length=255)
    canceled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class OverageReport(SQLModel, table=True):
    """A period's overage of one resource as sent to the provider: once per (organization,
    period, resource), with the local invoice's line and the period as `description`;
    `status` "pending" until the provider accepted it ("sent")."""

    __tablename__ = "overage_reports"

    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), primary_key=True)
    )
    period_start: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    resource: str = Field(primary_key=True, max_length=64)
    quantity: int = Field(sa_column=Column(BigInteger, nullable=False))
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    description: str = Field(max_length=300)
    status: str = Field(default="pending", max_length=20)
    provider_ref: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class TopUpPurchase(SQLModel, table=True):
    """A top-up pack bought: `amount` units of `resource` added to the organization's extra
    allowance, charged `price_minor`; (organization, idempotency key) is unique."""

    __tablename__ = "topup_purchases"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key", name="uq_topup_purchases_key"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False)
    )
    topup_id: str = Field(max_length=100)
    resource: str = Field(max_length=64)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    price_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    idempotency_key: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=20)
    invoice_id: str | None = Field(default=None, max_length=32)
    provider_ref: str | None = Field(default=None, max_length=100)
    purchased_at: datetime = Field(sa_type=UtcDateTime)


class ProviderEvent(SQLModel, table=True):
    """A provider's webhook event already handled: each event id is handled once."""

    __tablename__ = "provider_events"

    id: str = Field(primary_key=True, max_length=100)
    organization_id: str | None = Field(default=None, max_length=32)
    type: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)
    handled_at: datetime = Field(sa_type=UtcDateTime)


class SigningKey(SQLModel, table=True):
    """A secret generated once and shared by every worker (e.g. for invoice links)."""

    __tablename__ = "signing_keys"

    name: str = Field(primary_key=True, max_length=50)
    secret: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
