"""Retention of raw usage events: a new epoch each month, and the epochs older than the
retention (`TALLY_EVENT_RETENTION_DAYS`) removed whole, while counters, rollups, alerts and
invoices stay.

An epoch is removed once the next one started more than the retention ago: every event in
it was recorded before that, so an event, and the idempotency of its key, is kept at least
the retention and at most about a month longer. On PostgreSQL its partition is dropped (a
catalog change, whatever its size); on SQLite its rows are deleted in batches, each its own
short transaction. `maintain` is idempotent and safe to run from several processes at once:
`tally prune-events` runs it, and so does every `tally serve` worker, hourly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from core.db import Database
from limits import event_storage
from limits.models import UsageEventEpoch, epoch_of

log = logging.getLogger(__name__)

DELETE_BATCH = 10_000
"""Events deleted per transaction on SQLite, so that writers never wait long."""
EVERY = timedelta(hours=1)
"""How often a `tally serve` worker runs `maintain`."""


@dataclass(frozen=True)
class Removed:
    """An epoch removed: its number and when the events it held were recorded (from
    `started_at`, before `ended_at`)."""

    epoch: int
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class Maintained:
    """What a run of `maintain` did, and the epochs kept (oldest first)."""

    started: int | None
    removed: tuple[Removed, ...]
    kept: tuple[UsageEventEpoch, ...]


async def maintain(db: Database, now: datetime, retention: timedelta) -> Maintained:
    """Start the epoch of `now`'s month when it is newer than the current one, then remove
    the epochs whose successor started at or before `now - retention`."""
    started = await _start(db, now)
    async with db.read() as session:
        epochs = list(await event_storage.epochs(session))
    removed: list[Removed] = []
    for epoch, following in pairwise(epochs):
        if following.started_at > now - retention:
            break
        await _remove(db, epoch.epoch)
        removed.append(Removed(epoch.epoch, epoch.started_at, following.started_at))
    return Maintained(started, tuple(removed), tuple(epochs[len(removed) :]))


async def _start(db: Database, now: datetime) -> int | None:
    wanted = epoch_of(now)
    async with db.write() as session:
        await event_storage.lock_maintenance(session)
        current = (await event_storage.epochs(session))[-1]
        if wanted <= current.epoch:
            return None
        await event_storage.create_partition(session, wanted)
        return wanted if await event_storage.start_epoch(session, wanted, now) else None


async def _remove(db: Database, epoch: int) -> None:
    if db.dialect == "postgresql":
        async with db.write() as session:
            await event_storage.lock_maintenance(session)
            await event_storage.drop_partition(session, epoch)
            await event_storage.forget_epoch(session, epoch)
        return
    while True:
        async with db.write() as session:
            deleted = await event_storage.delete_events(session, epoch, DELETE_BATCH)
            if deleted < DELETE_BATCH:
                await event_storage.forget_epoch(session, epoch)
                return


async def keep_maintaining(
    db: Database, now: Callable[[], datetime], retention: timedelta, every: timedelta = EVERY
) -> None:
    """Run `maintain` now and then every `every`, until cancelled; a failed run is logged and
    tried again at the next."""
    while True:
        try:
            done = await maintain(db, now(), retention)
        except Exception:
            log.exception("usage event retention failed; trying again in %s", every)
        else:
            for removed in done.removed:
                log.info(
                    "usage events recorded from %s to %s removed (epoch %d, retention %s)",
                    removed.started_at.isoformat(),
                    removed.ended_at.isoformat(),
                    removed.epoch,
                    retention,
                )
        await asyncio.sleep(every.total_seconds())
