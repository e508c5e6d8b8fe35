"""SQL for organizations, members and API keys.

A statement that changes keys in bulk (revoking, lowering roles) drops the organization's
cached keys when its transaction commits (`core.auth_cache`); changes made through ORM
objects are noticed at flush.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.auth_cache import KeyAccess, forget_on_commit
from core.orgs.models import ApiKey, Member, Organization


async def add(session: AsyncSession, *rows: Organization | Member | ApiKey) -> None:
    session.add_all(rows)
    await session.flush()


async def get_organization(session: AsyncSession, organization_id: str) -> Organization | None:
    return await session.get(Organization, organization_id)


async def count_organizations(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Organization))).scalar_one())


async def find_demo_organization(session: AsyncSession) -> Organization | None:
    result = await session.execute(select(Organization).where(col(Organization.is_demo)).limit(1))
    return result.scalar_one_or_none()


async def list_members(session: AsyncSession, organization_id: str) -> Sequence[Member]:
    result = await session.execute(
        select(Member)
        .where(col(Member.organization_id) == organization_id)
        .order_by(col(Member.created_at), col(Member.id))
    )
    return result.scalars().all()


async def revoke_api_keys(
    session: AsyncSession, organization_id: str, names: Sequence[str], at: datetime
) -> None:
    forget_on_commit(session, organization_id)
    await session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.organization_id) == organization_id,
            col(ApiKey.name).in_(names),
            col(ApiKey.revoked_at).is_(None),
        )
        .values(revoked_at=at)
    )


_API_KEYS = ApiKey.__table__  # type: ignore[attr-defined]
_ORGANIZATIONS = Organization.__table__  # type: ignore[attr-defined]
_KEY_FIELDS = (
    "id",
    "organization_id",
    "role",
    "service",
    "member_id",
    "prefix",
    "revoked_at",
    "expires_at",
    "last_used_at",
)
_KEY_ACCESS = select(*(_API_KEYS.c[name] for name in _KEY_FIELDS), *_ORGANIZATIONS.c).join_from(
    _API_KEYS, _ORGANIZATIONS, _ORGANIZATIONS.c.id == _API_KEYS.c.organization_id
)


async def find_key_access(session: AsyncSession, secret_hash: str) -> KeyAccess | None:
    """The key with this hash and its organization, in one statement of columns (no ORM
    entities): the only read of authentication."""
    statement = _KEY_ACCESS.where(_API_KEYS.c.secret_hash == secret_hash)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    split = len(_KEY_FIELDS)
    key = dict(zip(_KEY_FIELDS, row[:split], strict=True))
    organization = dict(zip(_ORGANIZATIONS.c.keys(), row[split:], strict=True))
    return KeyAccess(**key, organization=organization)


async def find_member(
    session: AsyncSession, organization_id: str, *, id: str | None = None, email: str | None = None
) -> Member | None:
    statement = select(Member).where(col(Member.organization_id) == organization_id)
    if id is not None:
        statement = statement.where(col(Member.id) == id)
    if email is not None:
        statement = statement.where(func.lower(col(Member.email)) == email.lower())
    return (await session.execute(statement)).scalars().first()


async def count_owners(session: AsyncSession, organization_id: str) -> int:
    statement = select(func.count()).where(
        col(Member.organization_id) == organization_id, col(Member.role) == "owner"
    )
    return int((await session.execute(statement)).scalar_one())


async def delete_member(session: AsyncSession, member: Member) -> None:
    await session.delete(member)
    await session.flush()


async def find_api_key_by_id(
    session: AsyncSession, organization_id: str, key_id: str
) -> ApiKey | None:
    result = await session.execute(
        select(ApiKey).where(
            col(ApiKey.organization_id) == organization_id, col(ApiKey.id) == key_id
        )
    )
    return result.scalar_one_or_none()


async def touch_api_key(
    session: AsyncSession, key_id: str, at: datetime, unless_after: datetime
) -> None:
    """Set the key's last use to `at` unless it is already later than `unless_after`."""
    await session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.id) == key_id,
            or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) <= unless_after),
        )
        .values(last_used_at=at)
    )


async def list_api_keys(session: AsyncSession, organization_id: str) -> Sequence[ApiKey]:
    """Every key of the organization, the newest first."""
    result = await session.execute(
        select(ApiKey)
        .where(col(ApiKey.organization_id) == organization_id)
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
    )
    return result.scalars().all()


async def revoke_member_keys(
    session: AsyncSession, organization_id: str, member_id: str, at: datetime
) -> list[str]:
    """Revoke every live key of the member; the ids of the keys revoked."""
    forget_on_commit(session, organization_id)
    result = await session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.organization_id) == organization_id,
            col(ApiKey.member_id) == member_id,
            col(ApiKey.revoked_at).is_(None),
        )
        .values(revoked_at=at)
        .returning(col(ApiKey.id))
    )
    return sorted(str(key_id) for key_id in result.scalars().all())


async def lower_member_keys(
    session: AsyncSession, organization_id: str, member_id: str, roles: Sequence[str], to: str
) -> None:
    """Give the member's keys holding one of `roles` the role `to` instead."""
    forget_on_commit(session, organization_id)
    await session.execute(
        update(ApiKey)
        .where(
            col(ApiKey.organization_id) == organization_id,
            col(ApiKey.member_id) == member_id,
            col(ApiKey.role).in_(roles),
        )
        .values(role=to)
    )
