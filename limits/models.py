"""Tables of the limit engine: counters and usage events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from tally.db import UtcDateTime
from tally.orgs.models import new_id


class UsageCounter(SQLModel, table=True):
    """How much of a resource an organization has used in a period.

    Metered resources have one row per billing period (a reset is a new row, no cron);
    gauges keep one row under `GAUGE_EPOCH`.
    """

    __tablename__ = "usage_counters"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    period_start: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    used: int = Field(sa_column=Column(BigInteger, nullable=False))


class UsageEventRow(SQLModel, table=True):
    """One accepted usage event; (organization, idempotency key) is unique.

    `used_after` and `limit_value` keep the decision so that a replay returns it.
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ux_usage_events_idempotency", "organization_id", "idempotency_key", unique=True),
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
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
