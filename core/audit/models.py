"""The audit log's table: one row per change made to an organization."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from core.db import UtcDateTime


class AuditEntry(SQLModel, table=True):
    """A change to an organization: what (`action`, on `subject`), when (`at`), who (the
    member's id and email, the key's id and prefix; none for Tally itself) and the values
    `before` and `after` it (JSON). Written in the transaction of the change, never updated.
    `id` grows with each entry, so it orders the log and serves as its cursor."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_organization_id_id", "organization_id", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False)
    )
    at: datetime = Field(sa_type=UtcDateTime)
    action: str = Field(max_length=60)
    subject: str | None = Field(default=None, max_length=100)
    member_id: str | None = Field(default=None, max_length=32)
    member_email: str | None = Field(default=None, max_length=320)
    api_key_id: str | None = Field(default=None, max_length=32)
    api_key_prefix: str | None = Field(default=None, max_length=20)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
