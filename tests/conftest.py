"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TALLY_TEST_POSTGRES_URL (an admin URL; default the local server).
Without it reachable, its tests skip saying why, unless TALLY_REQUIRE_POSTGRES=1 (CI),
which makes them fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from billing.accounts import OpenedAccount, open_account
from core.clock import FrozenClock
from core.config import Settings
from core.migrate import upgrade
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.support import write_plans

POSTGRES_ADMIN_URL = os.environ.get(
    "TALLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("TALLY_REQUIRE_POSTGRES") == "1"
START = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as error:
        reason = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}".strip()
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (TALLY_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


def create_postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new empty database; returns its URL and a function that drops it."""
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin_url.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return f"{base}/{name}", drop


def _fresh_database(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{directory / f'tally-{uuid.uuid4().hex[:8]}.db'}"
        return
    url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database shared by the session's tests; each test uses its own orgs."""
    for url in _fresh_database(request, tmp_path_factory.mktemp("db")):
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database with no tables, for one test."""
    yield from _fresh_database(request, tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def plans() -> str | None:
    """The text of a plans file for this test's runtime; None keeps the built-in catalog.
    A module overrides it to run on its own plans."""
    return None


@pytest.fixture
def settings(database_url: str, tmp_path: Path, plans: str | None) -> Settings:
    if plans is None:
        return Settings(database_url=database_url)
    return Settings(
        database_url=database_url, plans_path=write_plans(tmp_path / "plans.toml", plans)
    )


@pytest.fixture
async def runtime(settings: Settings, clock: FrozenClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings, clock)
    yield runtime
    await runtime.db.dispose()


OpenOrg = Callable[..., Awaitable[OpenedAccount]]


@pytest.fixture
def open_org(runtime: Runtime) -> OpenOrg:
    """Opens an organization (default: Ecommerce Enterprise, resets on the 1st)."""

    async def factory(
        plan: str = "ecommerce-enterprise", name: str = "Test Org", anchor_day: int = 1
    ) -> OpenedAccount:
        async with runtime.db.write() as session:
            return await open_account(
                session,
                runtime.engine,
                runtime.catalog,
                name=name,
                plan_id=plan,
                owner_email=f"owner-{uuid.uuid4().hex[:8]}@example.com",
                anchor_day=anchor_day,
            )

    return factory


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP through the real ASGI app."""
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
        yield client
