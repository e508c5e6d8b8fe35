"""Tables of the kernel: Organization, Member, ApiKey."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, ForeignKey, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UtcDateTime
from core.ids import new_id


class Role(StrEnum):
    """A member's role; service keys have no role, only the usage scope."""

    OWNER = "owner"
    ADMIN = "admin"
    BILLING = "billing"
    MEMBER = "member"

    @property
    def rank(self) -> int:
        """How much the role may do: owner 3, admin 2, billing 1, member 0."""
        return _RANKS[self]

    def at_most(self, other: Role) -> bool:
        """Whether this role grants no more than `other`."""
        return self.rank <= other.rank


_RANKS = {Role.OWNER: 3, Role.ADMIN: 2, Role.BILLING: 1, Role.MEMBER: 0}


class Organization(SQLModel, table=True):
    """A customer of the SaaS: the owner of limits, usage, members and invoices.

    `plan_id` is the plan in force, an opaque key into billing's catalog;
    `billing_anchor_day` (1 to 31) fixes when metered usage resets. `currency` (ISO 4217,
    chosen when the account opens) and `locale` are those of every amount shown and billed.
    Billing keeps on this row what every usage decision reads, so the hot path reads it with
    the organization: `spend_cap_minor`, the most the organization lets overage cost per
    period (None: no cap), and `usage_suspended_from`, the instant from which metered usage is
    refused (the end of a dunning grace, a cancellation; None: never).
    """

    __tablename__ = "organizations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    plan_id: str = Field(max_length=100)
    billing_anchor_day: int = Field(default=1, ge=1, le=31)
    is_demo: bool = Field(default=False)
    created_at: datetime = Field(sa_type=UtcDateTime)
    currency: str = Field(default="EUR", max_length=3)
    locale: str = Field(default="en", max_length=20)
    spend_cap_minor: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    usage_suspended_from: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Member(SQLModel, table=True):
    """A person with access to an organization; an invited one holds a seat too."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False, index=True)
    )
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=200)
    role: str = Field(max_length=20)
    status: str = Field(default="active", max_length=20)
    created_at: datetime = Field(sa_type=UtcDateTime)


class ApiKey(SQLModel, table=True):
    """An API key: its secret is shown once and stored only as a SHA-256 hash.

    A member key carries a role (at most its member's) and belongs to its member (`member_id`):
    removing the member revokes it. A service key (`service=True`) carries the usage scope only
    and belongs to the organization. A key past `expires_at` is refused; `last_used_at` is
    written at most once a minute.
    """

    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(
        sa_column=Column(String(32), ForeignKey("organizations.id"), nullable=False, index=True)
    )
    name: str = Field(max_length=200)
    role: str | None = Field(default=None, max_length=20)
    service: bool = Field(default=False)
    member_id: str | None = Field(default=None, max_length=32, index=True)
    prefix: str = Field(max_length=20)
    secret_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
