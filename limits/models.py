"""Tables of the limit engine: counters, events, reservations, rollups and alerts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
)
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


class OrganizationRef(SQLModel, table=True):
    """A small integer per organization: how raw usage events name it (4 bytes in each row
    and in its index, instead of the 32-character id). Given once, when the organization is
    opened (`repository.add_organization_ref`), never changed nor reused."""

    __tablename__ = "organization_refs"

    ref: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(max_length=32, unique=True)


def epoch_of(instant: datetime) -> int:
    """The month holding `instant` (UTC), counted from January 1970: 674 is March 2026."""
    utc = instant.astimezone(UTC)
    return (utc.year - 1970) * 12 + utc.month - 1


class UsageEventEpoch(SQLModel, table=True):
    """A span of recording time whose raw events are stored together: on PostgreSQL one
    partition of `usage_events`, dropped whole once the span is older than the retention.

    An epoch runs from `started_at` to the next epoch's start; events are written to the
    newest, which `retention.maintain` advances once a month (under a lock no writing
    transaction holds, so none spans two epochs). `epoch` is the month it starts in
    (`epoch_of`), which names its partition.
    """

    __tablename__ = "usage_event_epochs"

    epoch: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    started_at: datetime = Field(sa_type=UtcDateTime)


class UsageEventRow(SQLModel, table=True):
    """One accepted usage event, kept at least `TALLY_EVENT_RETENTION_DAYS` after it was
    recorded: what a replay of its idempotency key answers, and the GDPR export.

    Compact (README, *Storage of raw events*): the organization is its `OrganizationRef`; no
    surrogate id: the key (organization, idempotency key, epoch) is the only index;
    `period_start` is the day the event's period starts (periods start at 00:00 UTC); the
    instant it was recorded is not kept, the epoch is its month; `attributes` keeps only what
    the columns do not (None when nothing is left: `stored_attributes`); columns go widest
    first, as PostgreSQL aligns them. On PostgreSQL the table is partitioned by `epoch`
    (`UsageEventEpoch`); a key is unique per organization across epochs (see
    `event_storage`). `used_after` and `limit_value` keep the decision that a replay answers;
    `cost_micros` is the cost at ingestion in millionths of the price table's currency (None:
    unpriced). Statistics never read this table: they read the rollups.
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        PrimaryKeyConstraint(
            "organization_ref", "idempotency_key", "epoch", name="pk_usage_events"
        ),
        {"postgresql_partition_by": "LIST (epoch)"},
    )

    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    used_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    limit_value: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cost_micros: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    organization_ref: int = Field(sa_column=Column(Integer, nullable=False))
    period_start: date = Field(sa_column=Column(Date, nullable=False))
    epoch: int = Field(sa_column=Column(SmallInteger, nullable=False))
    resource: str = Field(max_length=64)
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False))
    model: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )

    @staticmethod
    def stored_attributes(
        attributes: Mapping[str, Any], model: str | None, action: str | None
    ) -> dict[str, Any] | None:
        """What a row keeps of an event's attributes: all but `model` and `action` when the
        columns hold them; None when nothing is left."""
        kept = {
            name: value
            for name, value in attributes.items()
            if not ((name, value) == ("model", model) or (name, value) == ("action", action))
        }
        return kept or None

    def all_attributes(self) -> dict[str, Any]:
        """The event's attributes as recorded: the stored ones and those its columns hold."""
        restored = dict(self.attributes or {})
        for name, value in (("model", self.model), ("action", self.action)):
            if value is not None:
                restored[name] = value
        return restored


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


ROLLUP_GRAINS = (15, 60, 1440)
"""The rollups' bucket lengths in minutes, finest first: a quarter hour, an hour, a UTC day."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rollup_bucket(instant: datetime, grain: int) -> datetime:
    """The UTC start of the `grain`-minute bucket holding `instant`, aligned from the Unix
    epoch (PostgreSQL's `date_bin(make_interval(mins => grain), instant, '1970-01-01Z')`)."""
    size = timedelta(minutes=grain)
    return _EPOCH + (instant - _EPOCH) // size * size


class UsageRollup(SQLModel, table=True):
    """Usage per organization, resource, grain, bucket, model and action ('' when absent).

    `grain` is the bucket's length in minutes (`ROLLUP_GRAINS`: 15, 60 or 1440); `bucket` is
    the UTC start of the grain-aligned interval (aligned from the Unix epoch) holding the
    events. Every event is added to one row of each grain, in the transaction that records
    it; statistics read only these and `UsageRollupTotal`. `unpriced_amount` is the part of
    `amount` whose model had no price.
    """

    __tablename__ = "usage_rollups"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    grain: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    bucket: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    model: str = Field(primary_key=True, max_length=200)
    action: str = Field(primary_key=True, max_length=200)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    cost_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    unpriced_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    events: int = Field(sa_column=Column(BigInteger, nullable=False))


class UsageRollupTotal(SQLModel, table=True):
    """`UsageRollup` summed over models and actions: what usage over time reads."""

    __tablename__ = "usage_rollup_totals"

    organization_id: str = Field(primary_key=True, max_length=32)
    resource: str = Field(primary_key=True, max_length=64)
    grain: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    bucket: datetime = Field(sa_type=UtcDateTime, primary_key=True)
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
    of the limit, "spend_cap" a percent of the organization's spend cap. A gauge has no
    period: its alerts' `period_start` is the instant of each crossing (`crossed_at`)."""

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
