"""The `tally` command, run as a user runs it: a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from core.db import driver_url
from core.orgs import Organization
from tests.graph.test_page import PAGE
from tests.support import free_port


def tally(*args: str, database_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TALLY_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def organizations(database_url: str) -> int:
    engine = create_engine(driver_url(database_url, asynchronous=False))
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(Organization)).scalar_one()
            )
    finally:
        engine.dispose()


def test_create_org_prints_the_ids_and_keys(empty_database_url: str) -> None:
    done = tally(
        "create-org", "--name", "Acme", "--plan", "growth", database_url=empty_database_url
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert set(created) == {"organization_id", "owner_api_key", "service_api_key"}
    assert created["owner_api_key"] != created["service_api_key"]
    assert organizations(empty_database_url) == 1


def test_create_org_with_an_unknown_plan_writes_nothing(database_url: str) -> None:
    before = organizations(database_url)
    done = tally("create-org", "--name", "Acme", "--plan", "platinum", database_url=database_url)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unknown plan 'platinum'" in done.stderr
    assert "ecommerce-enterprise" in done.stderr
    assert organizations(database_url) == before


def test_create_org_on_a_fresh_sqlite_file_with_an_unknown_plan_creates_no_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "never.db"
    done = tally("create-org", "--name", "A", "--plan", "nope", database_url=f"sqlite:///{path}")
    assert done.returncode == 2
    assert not path.exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1/tally", "sqlite:////nonexistent-dir/sub/tally.db"],
)
def test_an_unreachable_database_is_one_clear_line(url: str) -> None:
    for command in (["migrate"], ["serve", "--port", "1"]):
        done = tally(*command, database_url=url)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("tally: cannot reach the database at ")


def test_bad_database_url_is_one_clear_line() -> None:
    done = tally("migrate", database_url="mysql://localhost/tally")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tally: unsupported database URL 'mysql://localhost/tally': "
        "use sqlite:///PATH or postgresql://..."
    ]


def test_export_schema_check_fails_when_stale(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert tally("export-schema", "--output", str(target), database_url=url).returncode == 0
    assert (
        tally("export-schema", "--check", "--output", str(target), database_url=url).returncode == 0
    )
    target.write_text(target.read_text() + "\ntype Stale { x: Int }\n")
    stale = tally("export-schema", "--check", "--output", str(target), database_url=url)
    assert stale.returncode == 1
    assert "is stale" in stale.stderr


def test_the_committed_schema_is_fresh(tmp_path: Path) -> None:
    done = tally("export-schema", "--check", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 0, done.stderr


def test_plans_and_resources_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    plans = tally("plans", database_url=url)
    assert "ecommerce-enterprise  Ecommerce Enterprise  €1,890.00/month excl. tax" in plans.stdout
    assert "    tokens: 200,000,000 (hard)" in plans.stdout
    resources = tally("resources", database_url=url)
    assert resources.stdout.splitlines()[0].startswith("tokens  metered  AI Tokens")


def test_a_bad_plans_file_is_a_clear_error(tmp_path: Path) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text('[plans.x]\nname = "X"\nprice_monthly = "1.005"\ncurrency = "EUR"\n')
    env = {**os.environ, "TALLY_PLANS": str(plans), "TALLY_DATABASE_URL": "sqlite:///x.db"}
    done = subprocess.run(
        [sys.executable, "-m", "tally.cli", "plans"], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "more decimals than EUR allows" in done.stderr


STATS = """query($from: DateTime!, $to: DateTime!) { organization {
  usageStats(from: $from, to: $to) {
    totalTokens tokensOverTime { tokens } byModel { key } byAction { key } } } }"""


def last_28_days() -> dict[str, str]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"from": (today - timedelta(days=28)).isoformat(), "to": today.isoformat()}


def _start_serve(
    database_url: str, port: int, *args: str, keys_file: Path | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    """`tally serve` started, and its output up to "Uvicorn running"."""
    env = {**os.environ, "TALLY_DATABASE_URL": database_url}
    if keys_file is not None:
        env["TALLY_DEMO_KEYS_FILE"] = str(keys_file)
    server = subprocess.Popen(
        [sys.executable, "-m", "tally.cli", "serve", "--port", str(port), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        lines.append(line)
        if "Uvicorn running" in line or not line:
            break
    return server, lines


def _stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    server.wait(timeout=20)
    if server.stdout is not None:
        server.stdout.close()


def test_serve_without_demo_seeds_nothing_and_prints_no_key(
    empty_database_url: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    server, lines = _start_serve(empty_database_url, free_port(), keys_file=keys_file)
    try:
        output = "".join(lines)
        assert "Uvicorn running" in output, output
        assert "owner key" not in output and "#key=" not in output, output
    finally:
        _stop(server)
    assert organizations(empty_database_url) == 0
    assert not keys_file.exists()


def test_serve_demo_keeps_its_keys_across_restarts(empty_database_url: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    port = free_port()
    server, lines = _start_serve(empty_database_url, port, "--demo", keys_file=keys_file)
    _stop(server)
    first = "".join(lines)
    page = re.search(rf"page: +http://127\.0\.0\.1:{port}/#key=(tally_\S+)$", first, re.M)
    assert page is not None, first
    assert keys_file.stat().st_mode & 0o777 == 0o600
    kept = json.loads(keys_file.read_text())
    assert kept["owner_api_key"] == page.group(1)
    server, lines = _start_serve(empty_database_url, port, "--demo", keys_file=keys_file)
    try:
        again = "".join(lines)
        assert "keys reused" in again, again
        assert f"/#key={page.group(1)}" in again
        response = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": "{ organization { name } }"},
            headers={"Authorization": f"Bearer {page.group(1)}"}, timeout=10,
        )  # fmt: skip
        assert response.json()["data"]["organization"]["name"] == "Acme Shop"
    finally:
        _stop(server)
    keys_file.unlink()
    server, lines = _start_serve(empty_database_url, port, "--demo", keys_file=keys_file)
    _stop(server)
    third = "".join(lines)
    assert "new keys issued" in third, third
    assert page.group(1) not in third
    assert json.loads(keys_file.read_text())["owner_api_key"] != page.group(1)
    assert organizations(empty_database_url) == 1


def test_serve_seeds_the_demo_and_answers_the_page_query(
    empty_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    server, lines = _start_serve(
        empty_database_url, port, "--demo", keys_file=tmp_path / "keys.json"
    )
    try:
        output = "".join(lines)
        assert f"GraphiQL: http://127.0.0.1:{port}/graphql" in output, output
        key = next(line.split()[-1] for line in lines if "owner key:" in line)
        response = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": PAGE},
            headers={"Authorization": f"Bearer {key}"}, timeout=10,
        )  # fmt: skip
        organization = response.json()["data"]["organization"]
        assert organization["plan"]["name"] == "Ecommerce Enterprise"
        usage = organization["usage"]
        assert [usage[k]["display"] for k in ("documents", "agents", "seats")] == [
            "0 / 100.0K",
            "1 / 5",
            "1 / 10",
        ]
        assert re.fullmatch(r"\d+(\.\d)?[KM] / 200\.0M", usage["tokens"]["display"])
        stats = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": STATS, "variables": last_28_days()},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()["data"]["organization"]["usageStats"]
        assert stats["totalTokens"] > 100_000
        assert len(stats["byModel"]) >= 4 and len(stats["byAction"]) >= 4
        days = [point["tokens"] for point in stats["tokensOverTime"]]
        assert len(days) == 28 and min(days) < max(days) / 2, "a weekly rhythm"
        assert organization["subscription"]["currentPeriodStart"][8:10] == "01"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=20)
        if server.stdout is not None:
            server.stdout.close()
    again = tally("migrate", database_url=empty_database_url)
    assert again.returncode == 0
    assert organizations(empty_database_url) == 1
