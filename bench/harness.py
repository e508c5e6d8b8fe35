"""Plumbing shared by the benchmarks (not a benchmark itself).

Fresh PostgreSQL databases dropped at the end (`deployment`: one with a work directory and the
environment for `tally`), free ports, servers started as subprocesses and stopped in
`finally`, `tally create-org`, progress lines, targets and the exit status (wrk is in
wrk.py). Everything talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
TALLY = str(BIN / "tally")
ADMIN_URL = os.environ.get("TALLY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BIG_LIMIT = 10**12

PLANS = """
[plans.ecommerce-enterprise]
name = "Ecommerce Enterprise"
price_monthly = "1890.00"
currency = "EUR"
[plans.ecommerce-enterprise.limits]
tokens = 200_000_000
documents = 100_000
agents = 5
seats = 10

[plans.bench-hard]
name = "Bench hard"
price_monthly = "100.00"
currency = "EUR"
[plans.bench-hard.limits]
tokens = {big}
[plans.bench-hard.policies]
tokens = "hard"

[plans.bench-small]
name = "Bench small"
price_monthly = "10.00"
currency = "EUR"
[plans.bench-small.limits]
tokens = 5_000
[plans.bench-small.policies]
tokens = "hard"
"""


class BenchFailure(Exception):
    """A correctness check failed: the benchmark exits non-zero."""


def say(message: str) -> None:
    """A progress line, stamped with the time and the machine's 1-minute load average."""
    load = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')} load {load:.1f}] {message}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchFailure(message)
    say(f"ok: {message}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def database(label: str) -> Iterator[str]:
    """A fresh empty database `tally_bench_<label>_<pid>`, dropped on the way out."""
    name = f"tally_bench_{label}_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    say(f"database {name} created")
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(drop)
        say(f"database {name} dropped")


def tally_env(url: str, workdir: Path) -> dict[str, str]:
    """The environment for `tally` on `url`, with the bench plans file."""
    plans = workdir / "bench-plans.toml"
    plans.write_text(PLANS.format(big=BIG_LIMIT), encoding="utf-8")
    return {**os.environ, "TALLY_DATABASE_URL": url, "TALLY_PLANS": str(plans)}


def create_org(env: dict[str, str], name: str, plan: str) -> dict[str, str]:
    """`tally create-org` (which migrates first): organization_id and both keys."""
    done = subprocess.run(
        [TALLY, "create-org", "--name", name, "--plan", plan, "--anchor-day", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchFailure(f"tally create-org failed: {done.stderr.strip()}")
    org: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    say(f"organization {name!r} on plan {plan}: {org['organization_id']}")
    return org


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def server(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[str]:
    """Run `command` in its own process group until the block ends; waits for /healthz."""
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise BenchFailure(f"{name} did not start (exit {process.returncode}):\n{tail}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        say(f"{name} up on {base} (pid {process.pid})")
        yield base
    finally:
        _stop(process)
        say(f"{name} stopped")


def tally_server(env: dict[str, str], log: Path, workers: int = 2) -> AbstractContextManager[str]:
    port = free_port()
    command = [TALLY, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return server(
        f"tally serve --workers {workers}", [*command, "--workers", str(workers)], env, port, log
    )


def ceiling_server(log: Path, workers: int = 2) -> AbstractContextManager[str]:
    port = free_port()
    command = [
        str(BIN / "uvicorn"),
        "ceiling_app:app",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return server(
        f"ceiling (bare Starlette, {workers} workers)", command, dict(os.environ), port, log
    )


@dataclass(frozen=True)
class Deployment:
    """A fresh database with the bench plans, and a work directory for its servers' logs."""

    url: str
    env: dict[str, str]
    workdir: Path

    def create_org(self, name: str, plan: str) -> dict[str, str]:
        return create_org(self.env, name, plan)

    def tally_server(self, workers: int = 2) -> AbstractContextManager[str]:
        return tally_server(self.env, self.workdir / "tally.log", workers)

    def ceiling_server(self, workers: int = 2) -> AbstractContextManager[str]:
        return ceiling_server(self.workdir / "ceiling.log", workers)


@contextmanager
def deployment(label: str) -> Iterator[Deployment]:
    """A temporary work directory and a fresh database (see `database`), both gone on the way
    out."""
    with tempfile.TemporaryDirectory() as tmp, database(label) as url:
        workdir = Path(tmp)
        yield Deployment(url, tally_env(url, workdir), workdir)


def target(label: str, value: float, goal: float, *, at_most: bool = False) -> str:
    """`label: value (target ...): met` or `MISSED by N%`."""
    met = value <= goal if at_most else value >= goal
    gap = f"MISSED by {1 - value / goal:.0%}" if not at_most else f"MISSED, {value / goal:.1f}x"
    gap = "met" if met else gap
    shown, wanted = (f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in (value, goal))
    return f"{label}: {shown} (target {'<=' if at_most else '>='} {wanted}): {gap}"


def code_version() -> str:
    """The commit measured, and whether the work tree had changes on top of it."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cI"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    changed = [line for line in dirty.splitlines() if not line[3:].startswith("bench/")]
    return f"{head or 'unknown'}" + (f" + {len(changed)} uncommitted file(s)" if changed else "")


def main_guard(run: Callable[[], None]) -> int:
    """Run a benchmark; a failed correctness check exits 1."""
    say(f"code: {code_version()}; {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    try:
        run()
    except BenchFailure as error:
        say(f"FAILED: {error}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    return 0
