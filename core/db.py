"""The database: async engines and sessions for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from core.config import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 15_000
READ_POOL = 20
WRITE_POOL = 8
"""PostgreSQL connections kept open per process, for reads and for writes: enough for the
requests in flight, so that no request pays for a new server process (opening one costs
milliseconds); group commit needs few writers."""
STATEMENT_POOL = 8
"""PostgreSQL connections kept open per process for writes made by one statement
(`Database.statement`): a group commit's call of the ledger function."""
POOL_OVERFLOW = 4


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT construct of the session's dialect, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def dialect_of(url: str) -> str:
    """'sqlite' or 'postgresql', from a database URL; anything else is an error."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "sqlite":
        return "sqlite"
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


def driver_url(url: str, *, asynchronous: bool) -> str:
    """The URL with the driver Tally uses: aiosqlite/pysqlite or psycopg 3."""
    rest = url.split(":", 1)[1]
    if dialect_of(url) == "postgresql":
        return "postgresql+psycopg:" + rest
    return ("sqlite+aiosqlite:" if asynchronous else "sqlite:") + rest


def _configure_sqlite(engine: AsyncEngine, *, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


class Database:
    """Async sessions on one database, from two engines: one for reads, one for writes.

    `read()` gives a session for queries (on PostgreSQL its engine is in autocommit: no BEGIN
    or ROLLBACK round trips); `write()` a session whose transaction commits on success and
    rolls back on error. On SQLite a write transaction starts with BEGIN IMMEDIATE, so writers
    queue on the busy timeout instead of failing on upgrade. `statement()` (PostgreSQL) is a
    write whose every statement is its own transaction, committed by PostgreSQL as the
    statement ends: one round trip for a write done by one statement, and no row lock held
    while the client sends COMMIT; on SQLite it is `write()`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = dialect_of(url)
        async_url = driver_url(url, asynchronous=True)
        if self.dialect == "sqlite":
            self.engine = create_async_engine(async_url)
            self.write_engine = create_async_engine(async_url)
            _configure_sqlite(self.engine, begin="BEGIN")
            _configure_sqlite(self.write_engine, begin="BEGIN IMMEDIATE")
        else:
            self.engine = create_async_engine(
                async_url,
                isolation_level="AUTOCOMMIT",
                pool_size=READ_POOL,
                max_overflow=POOL_OVERFLOW,
            )
            self.write_engine = create_async_engine(
                async_url, pool_size=WRITE_POOL, max_overflow=POOL_OVERFLOW
            )
            self.statement_engine = create_async_engine(
                async_url,
                isolation_level="AUTOCOMMIT",
                pool_size=STATEMENT_POOL,
                max_overflow=POOL_OVERFLOW,
            )
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._statement = (
            async_sessionmaker(self.statement_engine, expire_on_commit=False)
            if self.dialect == "postgresql"
            else None
        )

    @property
    def pools(self) -> dict[str, AsyncEngine]:
        """The engines (each with its connection pool) by name."""
        pools = {"read": self.engine, "write": self.write_engine}
        if self.dialect == "postgresql":
            pools["statement"] = self.statement_engine
        return pools

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        return tuple(self.pools.values())

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        async with self._write() as session, session.begin():
            yield session

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncSession]:
        if self._statement is None:
            async with self.write() as session:
                yield session
            return
        async with self._statement() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        for engine in self.engines:
            await engine.dispose()


_AFTER_COMMIT = "tally_after_commit"


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction has committed.

    Nothing runs if the transaction rolls back.
    """
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


CONNECTION_SQLSTATE_CLASSES = ("08", "53", "57P")
"""SQLSTATEs of a database that is away or cannot take more work now: connection exceptions
(08...), insufficient resources (53..., too many connections), operator intervention (57P...,
a shutdown, a server starting)."""


def is_connection_failure(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached or used now (retrying later may
    work), as opposed to a failure of the statement itself (bad data, a bug)."""
    if isinstance(error, OSError | ConnectionError | sqlalchemy_exc.TimeoutError):
        return True
    if not isinstance(error, sqlalchemy_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(CONNECTION_SQLSTATE_CLASSES)
    if isinstance(original, OSError):
        return True
    if isinstance(error, sqlalchemy_exc.OperationalError):
        message = str(original).lower()
        return sqlstate is None and any(
            hint in message
            for hint in ("connection", "could not connect", "unable to open", "database is locked")
        )
    return False
