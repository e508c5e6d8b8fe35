"""SQL of the raw usage events' storage: epochs, their partitions (PostgreSQL) and retention.

Events are written to the newest epoch (`UsageEventEpoch`). Every transaction that looks
idempotency keys up and writes events holds `EPOCH_LOCK` shared (`share_epoch`: the ledger
function, `repository.insert_events`); a new epoch is started under it exclusively
(`start_epoch`), so no writer spans two epochs, and a writer of the new epoch looks its keys
up after every writer of the old one committed: a key is unique per organization across
epochs, exactly, with a unique index per partition only. On SQLite (one writer at a time)
the lock is the database's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from limits.models import UsageEventEpoch

EPOCH_LOCK = 7_461_011_108
"""The advisory lock (PostgreSQL) writers hold shared and a new epoch takes exclusively; the
ledger function (`migrations/functions/tally_apply_usage.sql`) names the same number."""
MAINTENANCE_LOCK = 7_461_011_109
"""Held by the transaction that changes epochs or partitions: one maintainer at a time."""
PARTITION_SCHEMA = "usage_event_partitions"
"""Where the partitions live (out of the default schema, which holds the models' tables)."""
LOCK_TIMEOUT = "2s"
"""How long a maintenance step waits for a lock before giving up until its next run: writers
queue behind it, so it must not wait long."""

_epochs = UsageEventEpoch.__table__  # type: ignore[attr-defined]


def partition_name(epoch: int) -> str:
    """`usage_events_2026_03` for the epoch of March 2026 (`models.epoch_of`)."""
    return f"usage_events_{1970 + epoch // 12:04d}_{epoch % 12 + 1:02d}"


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def share_epoch(session: AsyncSession) -> None:
    """Hold the epoch lock shared until the transaction ends (PostgreSQL; a no-op on SQLite,
    whose write transactions are serial)."""
    if _postgres(session):
        await session.execute(
            text("SELECT pg_advisory_xact_lock_shared(:lock)"), {"lock": EPOCH_LOCK}
        )


async def lock_maintenance(session: AsyncSession) -> None:
    """Serialize maintainers, and bound the waits of this transaction (PostgreSQL)."""
    if _postgres(session):
        await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MAINTENANCE_LOCK}
        )


async def epochs(session: AsyncSession) -> Sequence[UsageEventEpoch]:
    """Every epoch, oldest first."""
    statement = select(UsageEventEpoch).order_by(_epochs.c.epoch)
    return (await session.execute(statement)).scalars().all()


async def create_partition(session: AsyncSession, epoch: int) -> None:
    """The partition of `epoch`, made and attached unless it is (PostgreSQL). Attaching takes
    a lock that lets writers and readers of `usage_events` go on."""
    if not _postgres(session):
        return
    name = f"{PARTITION_SCHEMA}.{partition_name(epoch)}"
    attached = await session.execute(
        text(
            "SELECT 1 FROM pg_inherits WHERE inhparent = 'usage_events'::regclass "
            "AND inhrelid = to_regclass(:name)"
        ),
        {"name": name},
    )
    if attached.first() is not None:
        return
    await session.execute(
        text(f"CREATE TABLE IF NOT EXISTS {name} (LIKE usage_events INCLUDING DEFAULTS)")
    )
    await session.execute(
        text(f"ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES IN ({epoch:d})")
    )


async def start_epoch(session: AsyncSession, epoch: int, at: datetime) -> bool:
    """Make `epoch` (its partition made) the one events are written to, from `at`, once every
    writer of the current one has committed; False when an epoch as new already is."""
    if _postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": EPOCH_LOCK})
    newest = (await session.execute(select(func.max(_epochs.c.epoch)))).scalar_one_or_none()
    if newest is not None and newest >= epoch:
        return False
    await session.execute(_epochs.insert().values(epoch=epoch, started_at=at))
    return True


async def drop_partition(session: AsyncSession, epoch: int) -> None:
    """Drop the partition of `epoch` and its events (PostgreSQL: the table dropped whole)."""
    if _postgres(session):
        name = f"{PARTITION_SCHEMA}.{partition_name(epoch)}"
        await session.execute(text(f"DROP TABLE IF EXISTS {name}"))


async def delete_events(session: AsyncSession, epoch: int, batch: int) -> int:
    """Delete up to `batch` events of `epoch` (SQLite, which has no partitions); how many."""
    result = await session.execute(
        text(
            "DELETE FROM usage_events WHERE rowid IN "
            "(SELECT rowid FROM usage_events WHERE epoch = :epoch LIMIT :batch)"
        ),
        {"epoch": epoch, "batch": batch},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def forget_epoch(session: AsyncSession, epoch: int) -> None:
    await session.execute(delete(_epochs).where(_epochs.c.epoch == epoch))
