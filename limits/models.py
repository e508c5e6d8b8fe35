"""Tables of the limit engine: counters, events, reservations, rollups and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from core.db import UtcDateTime
from core.ids import new_id


class UsageCounter(SQLModel, table=True):
    """How much of a resource an organization has used in a period, and holds on it.

    Metered resources have one row per billing period (a reset is a new row, no cron);
    gauges keep one row under `GAUGE_EPOCH`. `reserved` is the sum of held reservations,
    some of which may have expired and not yet been swept. `drawn` is how much of this
    period's usage was drawn from the organization's extra allowance (top-ups), past the limit.
    """

    __tablename__ = "usage_counters"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    period_start: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    used: int = Field(sa_column=Column(BigInteger, nullable=False))
    reserved: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    drawn: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )


class UsageEventRow(SQLModel, table=True):
    """One accepted usage event; (organization, idempotency key) is unique.

    `used_after` and `limit_value` keep the decision so that a replay returns it; `cost_micros`
    is the cost at ingestion in millionths of the price table's currency (None: unpriced).
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ux_usage_events_idempotency", "organization_id", "idempotency_key", unique=True),
        Index("ix_usage_events_time", "organization_id", "resource", "occurred_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(max_length=32)
    resource: str = Field(max_length=64)
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    period_start: datetime = Field(sa_type=UtcDateTime)
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    used_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    limit_value: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    model: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=200)
    cost_micros: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class UsageReservation(SQLModel, table=True):
    """An amount held against a limit until committed, released, or expired."""

    __tablename__ = "usage_reservations"
    __table_args__ = (
        Index("ux_usage_reservations_idempotency", "organization_id", "idempotency_key",
              unique=True),
        Index("ix_usage_reservations_held", "organization_id", "resource", "period_start",
              "status", "expires_at"),
    )  # fmt: skip

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(max_length=32)
    resource: str = Field(max_length=64)
    period_start: datetime = Field(sa_type=UtcDateTime)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(max_length=20)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)


class UsageRollup(SQLModel, table=True):
    """Usage per organization, resource, UTC hour, model and action ('' when absent).

    Maintained in the transaction that records the events; statistics read only these.
    `unpriced_amount` is the part of `amount` whose model had no price.
    """

    __tablename__ = "usage_rollups"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    model: str = Field(primary_key=True, max_length=200)
    action: str = Field(primary_key=True, max_length=200)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    cost_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    unpriced_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    events: int = Field(sa_column=Column(BigInteger, nullable=False))


class UsageAllowance(SQLModel, table=True):
    """Extra allowance an organization holds on a metered resource beyond its plan's limit
    (top-ups): `remaining` survives period resets and is drawn once the plan's limit is used."""

    __tablename__ = "usage_allowances"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    remaining: int = Field(sa_column=Column(BigInteger, nullable=False))
    granted: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_type=UtcDateTime)


class UsageAlert(SQLModel, table=True):
    """A threshold crossed, once per period, kind and threshold: `kind` "limit" is a percent
    of the limit, "spend_cap" a percent of the organization's spend cap."""

    __tablename__ = "usage_alerts"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    period_start: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    kind: str = Field(
        default="limit",
        sa_column=Column(String(20), primary_key=True, default="limit", server_default="limit"),
    )
    threshold: int = Field(primary_key=True)
    used: int = Field(sa_column=Column(BigInteger, nullable=False))
    limit_value: int = Field(sa_column=Column(BigInteger, nullable=False))
    crossed_at: datetime = Field(sa_type=UtcDateTime)
