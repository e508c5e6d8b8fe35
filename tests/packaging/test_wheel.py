"""Tally installed as a wheel (`pip install .`, not editable) works from any directory: its
migrations, plans, tax rates, model prices and schema are package data, not checkout files."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.packaging.venvs import venv_env
from tests.support import free_port

pytestmark = pytest.mark.wheel

PACKAGE_DATA = (
    "core/py.typed",
    "limits/py.typed",
    "plugins/py.typed",
    "billing/py.typed",
    "graph/py.typed",
    "tally/py.typed",
    "billing/plans.toml",
    "billing/tax_rates.toml",
    "limits/model_prices.toml",
    "graph/schema.graphql",
    "migrations/alembic.ini",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/0001_initial_schema.py",
)


def run_tally(
    venv: Path, cwd: Path, database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "tally"), *args],
        cwd=cwd,
        env=venv_env(venv, TALLY_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_ships_the_package_data(tally_wheel: Path, pytestconfig: pytest.Config) -> None:
    with zipfile.ZipFile(tally_wheel) as wheel:
        names = set(wheel.namelist())
        missing = [name for name in PACKAGE_DATA if name not in names]
        assert not missing, f"not in the wheel: {missing}"
        shipped = wheel.read("graph/schema.graphql").decode("utf-8")
    assert shipped == (pytestconfig.rootpath / "schema.graphql").read_text(encoding="utf-8")
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_tally_migrates_and_checks_its_schema(
    tally_venv: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = tmp_path / "installed.db"
    url = f"sqlite:///{database}"

    migrated = run_tally(tally_venv, elsewhere, url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "organizations", "api_keys", "usage_events", "invoices"} <= tables

    checked = run_tally(tally_venv, elsewhere, url, "export-schema", "--check")
    assert checked.returncode == 0, checked.stderr
    assert "is up to date" in checked.stdout
    assert list(elsewhere.iterdir()) == []


def test_the_installed_tally_serves(tally_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(tally_venv / "bin" / "tally"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=venv_env(tally_venv, TALLY_DATABASE_URL=f"sqlite:///{tmp_path / 'served.db'}"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"tally serve exited:\n{log.read_text()}"
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "tally serve did not answer within 60 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=30)
