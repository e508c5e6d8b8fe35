"""API keys: minting secrets, and turning a Bearer header into a principal."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from core.auth_cache import KeyAccess, KeyCache
from core.clock import Clock
from core.db import Database
from core.ids import new_secret
from core.orgs import repository
from core.orgs.models import ApiKey, Organization, Role

SECRET_PREFIX = "tally_"
USAGE_ROLES = (Role.OWNER, Role.ADMIN)
"""Member roles that may record usage, beside service keys."""
LAST_USE_EVERY = timedelta(minutes=1)
"""A key's last use is written at most this often."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organization's member key (with a role) or service key."""

    organization_id: str
    api_key_id: str
    role: Role | None
    service: bool
    member_id: str | None = None
    key_prefix: str = ""
    last_used_at: datetime | None = None

    def has_role(self, *roles: Role) -> bool:
        return self.role is not None and self.role in roles

    @property
    def may_record_usage(self) -> bool:
        """A service key, or a member key with one of `USAGE_ROLES`."""
        return self.service or self.has_role(*USAGE_ROLES)

    def use_to_record(self, at: datetime) -> bool:
        """Whether this use of the key is to be written (none in the last minute)."""
        return self.last_used_at is None or at - self.last_used_at >= LAST_USE_EVERY


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_api_key(
    organization_id: str,
    name: str,
    *,
    role: Role | None,
    service: bool,
    at: datetime,
    member_id: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is never stored, only its hash. A member key
    belongs to `member_id`; a service key to no member."""
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
        member_id=None if service else member_id,
        expires_at=expires_at,
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


def _principal(key: KeyAccess) -> Principal:
    return Principal(
        organization_id=key.organization_id,
        api_key_id=key.id,
        role=Role(key.role) if key.role else None,
        service=key.service,
        member_id=key.member_id,
        key_prefix=key.prefix,
        last_used_at=key.last_used_at,
    )


def _organization(key: KeyAccess) -> Organization:
    """The key's organization as a row of its own, built as the ORM builds a row it loads (no
    `__init__`) and detached, as if read by a session that closed: a request may change its
    copy without touching another's."""
    organization: Organization = class_mapper(Organization).class_manager.new_instance()
    instance_dict(organization).update(key.organization)
    make_transient_to_detached(organization)
    return organization


def is_live(key: KeyAccess, at: datetime) -> bool:
    """Neither revoked nor past its expiry at `at`."""
    if key.revoked_at is not None:
        return False
    return key.expires_at is None or at < key.expires_at


async def authenticate(
    session: AsyncSession, secret: str | None, *, at: datetime | None = None
) -> Principal | None:
    """The principal of a live key at `at` (now when None), read now (no cache), or None for
    no key, an unknown key, a revoked or an expired one."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        return None
    key = await repository.find_key_access(session, hash_secret(secret))
    if key is None or not is_live(key, at or datetime.now(UTC)):
        return None
    return _principal(key)


class Authenticator:
    """Turns a request's secret into its principal and organization, for one process.

    A key is read with its organization in one statement and kept `cache_seconds` in a
    `KeyCache` (see `core.auth_cache` for what drops it sooner); its expiry is checked at
    every request against the clock. A key's last use is written at most once a minute.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.clock = clock
        self.cache = KeyCache(cache_seconds, monotonic=monotonic)

    async def authenticate(self, secret: str | None) -> tuple[Principal, Organization] | None:
        """The principal of a live key and its organization, or None for no key, an unknown
        key, a revoked or an expired one."""
        if not secret or not secret.startswith(SECRET_PREFIX):
            return None
        secret_hash = hash_secret(secret)
        entry = self.cache.get(secret_hash)
        if entry is None:
            generation = self.cache.generation
            async with self.db.read() as session:
                key = await repository.find_key_access(session, secret_hash)
            if key is None:
                return None
            entry = self.cache.put(secret_hash, key, generation)
        if not is_live(entry.access, self.clock.now()):
            return None
        return _principal(entry.access), _organization(entry.access)

    async def record_use(self, principal: Principal, at: datetime) -> None:
        """Write the key's last use, unless it was written in the last minute (by this
        process, as it knows, or by another, as the conditional update checks)."""
        known = self.cache.last_used_at(principal.api_key_id) or principal.last_used_at
        if not replace(principal, last_used_at=known).use_to_record(at):
            return
        self.cache.note_use(principal.api_key_id, at)
        async with self.db.write() as session:
            await repository.touch_api_key(session, principal.api_key_id, at, at - LAST_USE_EVERY)
