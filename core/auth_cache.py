"""The keys a process has authenticated, kept for a bounded time, and what drops them sooner.

An entry is what authenticating a key read (`KeyAccess`: the key and its organization's row),
kept at most `seconds` (TALLY_AUTH_CACHE_SECONDS; 0 keeps nothing) and at most `MAX_ENTRIES`
entries, the least recently used dropped first. Its expiry (`expires_at`) is still checked on
every use by the caller, against the clock.

A change committed in this process drops every entry of the organization it touched, from
every cache of the process, at commit:
- a change made through ORM objects (an `Organization`, or a `Member` or `ApiKey` changed or
  deleted) is noticed when the session flushes;
- a bulk statement on keys calls `forget_on_commit` (`core.orgs.repository` does).
Another process's change is seen once the entry is older than `seconds`. A read that started
before such a change and ends after it is not kept (`generation`).
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.orgs.models import ApiKey, Member, Organization

MAX_ENTRIES = 10_000
_CHANGED = "tally_auth_changed_organizations"


@dataclass(frozen=True)
class KeyAccess:
    """What authenticating a key reads: the key's columns a request needs (never its hash)
    and its organization's row, as column values."""

    id: str
    organization_id: str
    role: str | None
    service: bool
    member_id: str | None
    prefix: str
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    organization: Mapping[str, Any]


@dataclass
class CachedKey:
    """A key as read (its last use replaced by a later one this process wrote), and when it
    was read (monotonic seconds)."""

    access: KeyAccess
    read_at: float


class KeyCache:
    """Entries by the key's hash (the SHA-256 of its secret), for one process."""

    def __init__(
        self,
        seconds: float,
        size: int = MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.size = size
        self.monotonic = monotonic
        self.generation = 0
        """Moves on at each change dropped: an entry read before it is not kept."""
        self._entries: OrderedDict[str, CachedKey] = OrderedDict()
        self._hashes: dict[str, str] = {}
        _CACHES.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, secret_hash: str) -> CachedKey | None:
        """The entry of this hash if younger than `seconds`, else None (and it is dropped)."""
        entry = self._entries.get(secret_hash)
        if entry is None:
            return None
        if self.monotonic() - entry.read_at >= self.seconds:
            self._drop(secret_hash)
            return None
        self._entries.move_to_end(secret_hash)
        return entry

    def put(self, secret_hash: str, access: KeyAccess, generation: int) -> CachedKey:
        """The entry for what was read (with the later of its last use and the one this
        process noted); kept unless caching is off or a change was dropped since `generation`
        (the value when the read began)."""
        previous = self._entries.get(secret_hash)
        if previous is not None and _later(previous.access.last_used_at, access.last_used_at):
            access = replace(access, last_used_at=previous.access.last_used_at)
        entry = CachedKey(access, self.monotonic())
        if self.seconds <= 0 or generation != self.generation:
            return entry
        self._drop(secret_hash)
        self._entries[secret_hash] = entry
        self._hashes[access.id] = secret_hash
        while len(self._entries) > self.size:
            self._drop(next(iter(self._entries)))
        return entry

    def last_used_at(self, key_id: str) -> datetime | None:
        """The key's last use as this process knows it (None: not cached, or never used)."""
        entry = self._entry_of(key_id)
        return entry.access.last_used_at if entry else None

    def note_use(self, key_id: str, at: datetime) -> None:
        """The key's last use is now `at` (written by this process)."""
        entry = self._entry_of(key_id)
        if entry is not None:
            entry.access = replace(entry.access, last_used_at=at)

    def _entry_of(self, key_id: str) -> CachedKey | None:
        secret_hash = self._hashes.get(key_id)
        return self._entries.get(secret_hash) if secret_hash else None

    def forget(self, organization_id: str) -> None:
        """Drop every entry of the organization."""
        self.generation += 1
        for secret_hash, entry in list(self._entries.items()):
            if entry.access.organization_id == organization_id:
                self._drop(secret_hash)

    def _drop(self, secret_hash: str) -> None:
        entry = self._entries.pop(secret_hash, None)
        if entry is not None:
            self._hashes.pop(entry.access.id, None)


def _later(one: datetime | None, other: datetime | None) -> bool:
    return one is not None and (other is None or one > other)


_CACHES: weakref.WeakSet[KeyCache] = weakref.WeakSet()


def forget_organization(organization_id: str) -> None:
    """Drop the organization's entries from every cache of this process."""
    for cache in list(_CACHES):
        cache.forget(organization_id)


def forget_on_commit(session: AsyncSession, organization_id: str) -> None:
    """Drop the organization's entries once the session's transaction commits."""
    _changed(session.sync_session).add(organization_id)


def _changed(session: Session) -> set[str]:
    changed: set[str] = session.info.setdefault(_CHANGED, set())
    return changed


@event.listens_for(Session, "after_flush")
def _note_flushed_changes(session: Session, _context: Any) -> None:
    for instance in (*session.dirty, *session.deleted):
        if isinstance(instance, Organization):
            _changed(session).add(instance.id)
        elif isinstance(instance, ApiKey | Member):
            _changed(session).add(instance.organization_id)


@event.listens_for(Session, "after_commit")
def _forget_committed_changes(session: Session) -> None:
    for organization_id in session.info.pop(_CHANGED, ()):
        forget_organization(organization_id)


@event.listens_for(Session, "after_rollback")
def _keep_after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)
