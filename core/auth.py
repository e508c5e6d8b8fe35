"""API keys: minting secrets, and turning a Bearer header into a principal."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.ids import new_secret
from core.orgs import repository
from core.orgs.models import ApiKey, Organization, Role

SECRET_PREFIX = "tally_"
USAGE_ROLES = (Role.OWNER, Role.ADMIN)
"""Member roles that may record usage, beside service keys."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organization's member key (with a role) or service key."""

    organization_id: str
    api_key_id: str
    role: Role | None
    service: bool

    def has_role(self, *roles: Role) -> bool:
        return self.role is not None and self.role in roles

    @property
    def may_record_usage(self) -> bool:
        """A service key, or a member key with one of `USAGE_ROLES`."""
        return self.service or self.has_role(*USAGE_ROLES)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_api_key(
    organization_id: str, name: str, *, role: Role | None, service: bool, at: datetime
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is never stored, only its hash."""
    if service == (role is not None):
        raise ValueError("a key is either a service key or a member key with a role")
    secret = SECRET_PREFIX + new_secret(32)
    key = ApiKey(
        organization_id=organization_id,
        name=name,
        role=role.value if role else None,
        service=service,
        prefix=secret[:12],
        secret_hash=hash_secret(secret),
        created_at=at,
    )
    return key, secret


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer ...` header, or None."""
    if not authorization:
        return None
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def _principal(key: ApiKey) -> Principal:
    return Principal(
        organization_id=key.organization_id,
        api_key_id=key.id,
        role=Role(key.role) if key.role else None,
        service=key.service,
    )


async def authenticate(session: AsyncSession, secret: str | None) -> Principal | None:
    """The principal of a live key, or None for no key, an unknown key or a revoked one."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        return None
    key = await repository.find_api_key(session, hash_secret(secret))
    if key is None or key.revoked_at is not None:
        return None
    return _principal(key)


async def authenticate_with_organization(
    session: AsyncSession, secret: str | None
) -> tuple[Principal, Organization] | None:
    """Like `authenticate`, with the key's organization, in one statement."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        return None
    found = await repository.find_api_key_with_organization(session, hash_secret(secret))
    if found is None or found[0].revoked_at is not None:
        return None
    return _principal(found[0]), found[1]
