"""Plumbing shared by the benchmarks (not a benchmark itself).

Fresh PostgreSQL databases dropped at the end (`deployment`: one with a work directory and the
environment for `tally`), free ports, servers started as subprocesses and stopped in
`finally`, `tally create-org` (and bench/open_orgs.py for many organizations at once), the
tokens stored per organization, the RSS of each `tally serve` worker, progress lines, targets
and the exit status (wrk is in wrk.py). Everything talks to 127.0.0.1 only, and every wait is
bounded.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import httpx
import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
TALLY = str(BIN / "tally")
ADMIN_URL = os.environ.get("TALLY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BIG_LIMIT = 10**12
TARGET_RSS_MB = 150.0

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


def load_average() -> str:
    """A summary line: the machine's load averages now."""
    one, five, fifteen = os.getloadavg()
    return f"load average at the end (1, 5, 15 min): {one:.1f}, {five:.1f}, {fifteen:.1f}"


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


def open_orgs(
    env: dict[str, str], count: int, plan: str, name: str, out: Path
) -> list[dict[str, str]]:
    """`count` organizations opened by bench/open_orgs.py (one process, Tally's own account
    opening), each as create-org prints it; progress goes to stderr."""
    say(f"opening {count:,} organizations on plan {plan} (bench/open_orgs.py)")
    script = str(BENCH / "open_orgs.py")
    done = subprocess.run(
        [sys.executable, script, str(count), "--plan", plan, "--name", name, "--output", str(out)],
        env=env,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise BenchFailure(f"bench/open_orgs.py failed (exit {done.returncode})")
    orgs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    if len(orgs) != count:
        raise BenchFailure(f"bench/open_orgs.py opened {len(orgs)} organizations, not {count}")
    return orgs


class Usage(NamedTuple):
    """An organization's tokens: its counters summed, the events stored and their amounts."""

    counter: int
    events: int
    amounts: int


USAGE_SQL = """
WITH o (id) AS (SELECT unnest(%(orgs)s::text[])),
c AS (SELECT organization_id AS id, sum(used) AS used FROM usage_counters
      WHERE resource = 'tokens' AND organization_id = ANY(%(orgs)s) GROUP BY 1),
e AS (SELECT r.organization_id AS id, count(*) AS events, sum(e.amount) AS amounts
      FROM usage_events AS e JOIN organization_refs AS r ON r.ref = e.organization_ref
      WHERE e.resource = 'tokens' AND r.organization_id = ANY(%(orgs)s) GROUP BY 1)
SELECT o.id, coalesce(c.used, 0), coalesce(e.events, 0), coalesce(e.amounts, 0)
FROM o LEFT JOIN c USING (id) LEFT JOIN e USING (id)
"""


def stored_usage(url: str, organization_ids: Sequence[str]) -> dict[str, Usage]:
    """Each organization's tokens, read in one statement (one snapshot), once the requests
    still in flight after a load stopped have landed: read again every 0.5 s until two reads
    agree (at most 20)."""
    last: dict[str, Usage] | None = None
    with psycopg.connect(url, autocommit=True) as connection:
        for _ in range(20):
            rows = connection.execute(USAGE_SQL, {"orgs": list(organization_ids)}).fetchall()
            now = {str(row[0]): Usage(int(row[1]), int(row[2]), int(row[3])) for row in rows}
            if now == last:
                break
            last = now
            time.sleep(0.5)
        else:
            say("stored usage still changing after 20 reads (10 s): using the last")
    assert last is not None
    return last


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass(frozen=True)
class Server:
    """A server started by `running`: its address, the pid of its main process, its log, and
    (`tally_process`) the pids of the workers it started with."""

    base: str
    pid: int
    log: Path
    workers: tuple[int, ...] = ()


@contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[Server]:
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
                tail = log.read_text(errors="replace")[-1500:]
                raise BenchFailure(
                    f"{name} did not start (exit {process.returncode}); errors in its log:\n"
                    f"{_log_errors(log)}\nthe log's end:\n{tail}"
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        say(f"{name} up on {base} (pid {process.pid})")
        yield Server(base, process.pid, log)
    finally:
        _stop(process)
        say(f"{name} stopped")


@contextmanager
def server(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[str]:
    """`running`, yielding only the address."""
    with running(name, command, env, port, log) as started:
        yield started.base


@contextmanager
def tally_process(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[Server]:
    """`tally serve --workers N`, once all N workers are up (at most 60 s after /healthz)."""
    port = free_port()
    command = [TALLY, "serve", "--host", "127.0.0.1", "--port", str(port)]
    name = f"tally serve --workers {workers}"
    with running(name, [*command, "--workers", str(workers)], env, port, log) as started:
        deadline = time.monotonic() + 60
        while len(pids := worker_pids(started.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.3)
        if len(pids) < workers:
            raise BenchFailure(f"{name}: {len(pids)} worker(s) up after 60 s")
        yield replace(started, workers=tuple(pids))


@contextmanager
def tally_server(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[str]:
    """`tally_process`, yielding only the address."""
    with tally_process(env, log, workers) as started:
        yield started.base


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def worker_pids(pid: int) -> list[int]:
    """The worker processes of a uvicorn server started as `pid`: its children started by
    multiprocessing (`spawn_main`), or the process itself when it serves alone."""
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_of(int(entry.name)) == pid:
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                workers.append(int(entry.name))
    return sorted(workers) or [pid]


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (10^6 bytes), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchFailure(f"no VmRSS for process {pid}")


def _log_errors(log: Path) -> str:
    """The last 20 lines of a server's log that name an error or a traceback."""
    lines = log.read_text(errors="replace").splitlines()
    found = [
        line
        for line in lines
        if '"level": "info"' not in line
        and any(word in line for word in ("Traceback", "Error", "Exception", '"level": "error"'))
    ]
    return "\n".join(found[-20:]) or "(no error in the log)"


def worker_rss(server: Server) -> list[str]:
    """Report lines: the RSS of each worker of `server` now, and the largest against the
    target (<= 150 MB per worker). A worker that died since the server started (replaced
    by a new one) fails the benchmark."""
    now = worker_pids(server.pid)
    gone = sorted(set(server.workers) - set(now))
    if gone:
        lines = server.log.read_text(errors="replace").splitlines()
        about = [line for line in lines if any(f"[{pid}]" in line for pid in gone)]
        raise BenchFailure(
            f"worker(s) {gone} of {server.pid} died during the runs (serving now: {now}); "
            "uvicorn's supervisor kills a worker that does not answer its health check within "
            "5 s, and logs 'died' whether it killed it or not. The log on them:\n"
            + "\n".join(about)
            + f"\nerrors in the log:\n{_log_errors(server.log)}"
        )
    sizes = {pid: rss_mb(pid) for pid in now}
    each = ", ".join(f"pid {pid} {size:,.1f} MB" for pid, size in sizes.items())
    lines = [
        f"RSS per worker after the runs: {each}",
        target("largest RSS per worker (MB)", max(sizes.values()), TARGET_RSS_MB, at_most=True),
    ]
    for line in lines:
        say(line)
    return lines


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

    def open_orgs(self, count: int, plan: str, name: str) -> list[dict[str, str]]:
        return open_orgs(self.env, count, plan, name, self.workdir / f"orgs-{count}.jsonl")

    def tally_server(self, workers: int = 2) -> AbstractContextManager[str]:
        return tally_server(self.env, self.workdir / "tally.log", workers)

    def tally_process(self, workers: int = 2) -> AbstractContextManager[Server]:
        """`tally_server` with the server's pid (for `worker_rss`)."""
        return tally_process(self.env, self.workdir / "tally.log", workers)

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
