"""Real processes for the fault tests: a `tally serve`, a private PostgreSQL cluster, and
the checks of what was stored."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg
import pytest

from billing.accounts import OpenedAccount, open_account
from core.config import Settings
from core.migrate import upgrade
from tally.runtime import build_runtime
from tests.conftest import REQUIRE_POSTGRES
from tests.support import free_port, tally_serve

PLANS = """
[plans.metered]
name = "Metered"
price_monthly = "10.00"
currency = "EUR"
[plans.metered.limits]
tokens = 1_000_000_000
"""
"""A limit no load here reaches: every event is accepted, so stored must equal answered."""


@dataclass
class Tally:
    """A running `tally serve` and the keys of its one organization."""

    base: str
    process: subprocess.Popen[bytes]
    organization_id: str
    service_key: str
    log: Path


def tally_env(database_url: str, directory: Path) -> dict[str, str]:
    """The environment of a Tally process on `database_url` with the metered plan."""
    plans = directory / "plans.toml"
    plans.write_text(PLANS)
    return {**os.environ, "TALLY_DATABASE_URL": database_url, "TALLY_PLANS": str(plans)}


@contextmanager
def serve(database_url: str, directory: Path, workers: int) -> Iterator[Tally]:
    """Creates an organization, then runs `tally serve --workers N` until the block ends."""
    env = tally_env(database_url, directory)
    upgrade(database_url)
    account = asyncio.run(_open_organization(database_url, directory / "plans.toml"))
    with tally_serve(env, directory / "server.log", workers=workers, seconds=60) as served:
        yield Tally(
            served.base,
            served.process,
            account.organization.id,
            account.service_api_key,
            served.log,
        )


async def _open_organization(database_url: str, plans: Path) -> OpenedAccount:
    runtime = build_runtime(Settings(database_url=database_url, plans_path=plans))
    try:
        async with runtime.db.write() as session:
            opened = await open_account(
                session, runtime.engine, runtime.catalog,
                name="Faults", plan_id="metered", owner_email="owner@example.com",
            )  # fmt: skip
        return opened
    finally:
        await runtime.db.dispose()


def worker_pids(master: int) -> list[int]:
    """The uvicorn worker processes of a `tally serve --workers N` (children of the master
    that run `multiprocessing`'s spawn_main, not its resource tracker)."""
    children: list[int] = []
    for task in glob(f"/proc/{master}/task/*/children"):
        children += [int(pid) for pid in Path(task).read_text().split()]
    workers = []
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            workers.append(pid)
    return workers


def open_connections(pid: int, port: int) -> int:
    """How many established TCP connections to `port` process `pid` holds (from /proc)."""
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    established = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            established += 1
    return established


@dataclass
class Stored:
    """What the database holds for one organization's tokens."""

    amounts: dict[str, int]
    """Each stored event's amount, by idempotency key."""
    counter: int
    """The sum of the organization's tokens counters (every period)."""


def stored(database_url: str, organization_id: str) -> Stored:
    """The organization's stored token events and counters."""
    with psycopg.connect(database_url) as connection:
        events = connection.execute(
            "SELECT e.idempotency_key, e.amount FROM usage_events AS e"
            " JOIN organization_refs AS r ON r.ref = e.organization_ref"
            " WHERE r.organization_id = %s AND e.resource = 'tokens'",
            (organization_id,),
        ).fetchall()
        (counter,) = connection.execute(
            "SELECT COALESCE(SUM(used), 0) FROM usage_counters"
            " WHERE organization_id = %s AND resource = 'tokens'",
            (organization_id,),
        ).fetchone() or (0,)
    return Stored({key: amount for key, amount in events}, int(counter))


def _postgres_binary(name: str) -> str | None:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PrivateCluster:
    """A PostgreSQL cluster of the test's own (initdb into a temporary directory, trust
    auth, a free port), which the test may stop and start. As root its commands run as the
    `postgres` user, which owns the directory."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.pg_ctl = pg_ctl
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="tally-faults-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.directory / "data"
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.as_user, *command], check=True, capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        """Starts the cluster and waits until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "postgres.log")
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stops the cluster at once (`-m immediate`: connections cut, crash recovery at the
        next start), as a crash or a failover would."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster; skipped (failed under TALLY_REQUIRE_POSTGRES=1) when
    PostgreSQL's server binaries are not installed."""
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        reason = "PostgreSQL's initdb and pg_ctl are not installed (apt: postgresql)"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (TALLY_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    cluster = PrivateCluster(initdb, pg_ctl)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
