"""Live usage: which organizations' usage changed, told to the subscribers of this process.

The hub is a plugin of the engine: its `tally_usage_recorded` / `tally_threshold_crossed` /
`tally_spend_cap_crossed` observers run after a change committed. On SQLite, where workers
are one process, they wake the subscribers in-process. On PostgreSQL they queue the
organization, and every `ANNOUNCE_INTERVAL` one statement (its own transaction) sends
`NOTIFY tally_usage, '<organization id>'` for each organization queued meanwhile; every worker
LISTENs on one dedicated connection (reconnecting when the database comes back) and wakes its
subscribers of that organization. The NOTIFY is not sent by the transactions that write
usage: PostgreSQL serializes the commits of transactions that notify (a database-wide lock
held through the commit's disk flush), which capped how many organizations could commit
usage at once; announced apart and coalesced, it costs a few statements a second.

Each subscription is coalesced: at most one update per `min_interval` (0.25 s), the latest
state always sent last, and never the same state twice in a row (two workers may announce the
same change); each update reads the organization's usage (and this period's alerts) once per
process, shared by all the organization's subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from core.db import Database, dialect_of
from core.orgs import Organization
from core.orgs import repository as orgs_repository
from limits import repository
from limits.engine import LimitEngine
from limits.hookspecs import hookimpl
from limits.models import UsageAlert
from limits.repository import USAGE_CHANNEL
from limits.types import UsageSnapshot

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.25
"""Seconds between two updates of one subscription: at most 4 a second."""
ANNOUNCE_INTERVAL = 0.05
"""Seconds over which this process's changes are coalesced into one NOTIFY statement."""
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to LISTEN again after the connection was lost (the last repeats)."""


@dataclass(frozen=True)
class UsageReading:
    """An organization's usage at one moment, and the alerts of its current period."""

    organization: Organization
    usage: UsageSnapshot
    alerts: Sequence[UsageAlert]


Reader = Callable[[str], Awaitable[UsageReading | None]]


class _Feed:
    """One organization's changes in this process: a version bumped at each change, and the
    latest reading, shared by the organization's subscribers."""

    def __init__(self, organization_id: str, reader: Reader) -> None:
        self.organization_id = organization_id
        self.reader = reader
        self.version = 0
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._reading: tuple[int, UsageReading | None] | None = None

    def bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed_after(self, seen: int) -> None:
        while self.version <= seen:
            await self._changed.wait()

    async def read(self, version: int) -> UsageReading | None:
        """A reading taken after change `version`: the shared one when it is recent enough."""
        async with self._lock:
            if self._reading is not None and self._reading[0] >= version:
                return self._reading[1]
            taken_at = self.version
            reading = await self.reader(self.organization_id)
            self._reading = (taken_at, reading)
            return reading


class UsageHub:
    """Fans committed usage changes out to this process's subscribers, per organization."""

    def __init__(
        self, db: Database, engine: LimitEngine, *, min_interval: float = MIN_INTERVAL
    ) -> None:
        self.db = db
        self.engine = engine
        self.min_interval = min_interval
        self.listens = dialect_of(db.url) == "postgresql"
        self._feeds: dict[str, _Feed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._announce: set[str] = set()
        self._queued = asyncio.Event()
        self.listening = asyncio.Event()

    async def start(self) -> None:
        """Begin receiving changes: observe the engine, and on PostgreSQL LISTEN and announce."""
        self._loop = asyncio.get_running_loop()
        self.engine.plugins.register(self, name=f"live-usage-{id(self)}")
        if self.listens:
            self._listener = asyncio.create_task(self._listen())
            self._announcer = asyncio.create_task(self._announcing())

    async def stop(self) -> None:
        for task in (self._listener, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = self._announcer = None
        if self.engine.plugins.is_registered(self):
            self.engine.plugins.unregister(self)

    def changed(self, organization_id: str) -> None:
        """A committed change of the organization's usage (from any thread): its subscribers
        in every process are woken (on PostgreSQL, once announced)."""
        loop = self._loop
        if loop is None:
            return
        if loop.is_running() and _running_loop() is not loop:
            loop.call_soon_threadsafe(self._changed, organization_id)
        else:
            self._changed(organization_id)

    def _changed(self, organization_id: str) -> None:
        if not self.listens:
            self._bump(organization_id)
            return
        self._announce.add(organization_id)
        self._queued.set()

    async def _announcing(self) -> None:
        """Send the queued organizations' NOTIFY, coalesced over `ANNOUNCE_INTERVAL`, in one
        statement of its own; this process hears them back through its LISTEN."""
        while True:
            await self._queued.wait()
            await asyncio.sleep(ANNOUNCE_INTERVAL)
            self._queued.clear()
            queued, self._announce = sorted(self._announce), set()
            try:
                async with self.db.read() as session:
                    await repository.announce_usage(session, queued)
            except Exception:
                log.warning("usage changes of %d organizations not announced", len(queued))
                for organization_id in queued:
                    self._bump(organization_id)

    def _bump(self, organization_id: str) -> None:
        feed = self._feeds.get(organization_id)
        if feed is not None:
            feed.bump()

    @hookimpl
    def tally_usage_recorded(self, organization: Organization, resource: Any, events: Any) -> None:
        self.changed(organization.id)

    @hookimpl
    def tally_threshold_crossed(
        self, organization: Organization, resource: Any, threshold: int, usage: Any
    ) -> None:
        self.changed(organization.id)

    @hookimpl
    def tally_spend_cap_crossed(
        self, organization: Organization, resource: Any, threshold: int, usage: Any
    ) -> None:
        self.changed(organization.id)

    async def subscribe(self, organization_id: str) -> AsyncIterator[UsageReading | None]:
        """The organization's usage now, then after each change, coalesced: never two within
        `min_interval`, and the state after the last change always last. None when the
        organization is gone."""
        feed = self._feeds.get(organization_id)
        if feed is None:
            feed = self._feeds[organization_id] = _Feed(organization_id, self.read)
        feed.subscribers += 1
        try:
            seen = feed.version
            reading = await feed.read(seen)
            yield reading
            sent, sent_at = _fingerprint(reading), time.monotonic()
            while True:
                await feed.changed_after(seen)
                wait = sent_at + self.min_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                seen = feed.version
                reading = await feed.read(seen)
                if _fingerprint(reading) == sent:
                    continue  # announced again (by another worker, or late): nothing new
                yield reading
                sent, sent_at = _fingerprint(reading), time.monotonic()
        finally:
            feed.subscribers -= 1
            if not feed.subscribers and self._feeds.get(organization_id) is feed:
                del self._feeds[organization_id]

    async def read(self, organization_id: str) -> UsageReading | None:
        """The organization's usage and its current period's alerts, in one read session."""
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            if organization is None:
                return None
            usage = await self.engine.usage(session, organization)
            alerts = await repository.list_alerts(session, organization_id, usage.period.start)
        return UsageReading(organization, usage, alerts)

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection for as long as the hub runs, reconnecting when
        the database goes away; after a reconnection every subscriber is woken, since
        changes committed meanwhile were not heard."""
        url = _psycopg_url(self.db.url)
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {USAGE_CHANNEL}")
                    if failures:
                        log.info("listening for usage changes again")
                        for organization_id in list(self._feeds):
                            self._bump(organization_id)
                    failures = 0
                    self.listening.set()
                    async for notification in connection.notifies():
                        self._bump(notification.payload)
            except psycopg.OperationalError as error:
                self.listening.clear()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                if not failures:
                    log.warning("usage notifications lost (%s); reconnecting", error)
                failures += 1
                await asyncio.sleep(delay)


def _fingerprint(reading: UsageReading | None) -> object:
    """What a subscriber was sent, to compare with: the usage and the alerts' values."""
    if reading is None:
        return None
    alerts = tuple(
        (a.resource, a.period_start, a.kind, a.threshold, a.used, a.limit_value, a.crossed_at)
        for a in reading.alerts
    )
    return (reading.usage, alerts)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _psycopg_url(url: str) -> str:
    """A PostgreSQL URL as libpq takes it (`postgresql://`, no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith(("postgresql", "postgres")) else url


__all__ = ["MIN_INTERVAL", "UsageHub", "UsageReading"]
