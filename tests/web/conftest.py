"""Browser tests of the Organization page: a real `tally serve` (SQLite, and PostgreSQL with 2
workers) driven by Debian's Chromium through Playwright for Python.

Chromium is launched by its path (`TALLY_CHROMIUM`, default `/usr/bin/chromium`), never
downloaded. Without it the tests skip saying why, unless `TALLY_REQUIRE_BROWSER=1` (as in
`.ci/run`), which makes them fail instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import create_postgres_database
from tests.support import tally_serve

CHROMIUM = Path(os.environ.get("TALLY_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("TALLY_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("TALLY_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
"""Where screenshots and measurements are kept (gitignored)."""

TIMEZONE = "Europe/Paris"
"""The viewer's time zone in every browser context: statistics must follow it."""


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return (
            f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set TALLY_CHROMIUM)"
        )
    return None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium, or a skip (a failure with TALLY_REQUIRE_BROWSER=1) saying why not."""
    reason = _browser_missing()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(reason + " (TALLY_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return CHROMIUM


@dataclass
class Server:
    """A running `tally serve` and the demo organization's keys."""

    base: str
    owner_key: str
    service_key: str
    backend: str
    workers: int
    log: Path
    writer: str = ""
    """Where usage is written from outside the browser: on PostgreSQL a second `tally serve`
    process on the same database (so a write reaches the page only through LISTEN/NOTIFY
    across processes); on SQLite the same server."""

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of an operation run with the owner's key; fails on GraphQL errors."""
        response = httpx.post(
            f"{self.base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.owner_key}"},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /v1/usage with the service key on a fresh connection to `writer`; the results."""
        response = httpx.post(
            f"{self.writer or self.base}/v1/usage",
            json={"events": events},
            headers={"Authorization": f"Bearer {self.service_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results


def _demo_keys(log: str) -> tuple[str, str]:
    owner = re.search(r"owner key:\s*(\S+)", log, re.IGNORECASE) or re.search(r"#key=([\w-]+)", log)
    service = re.search(r"service key:\s*(\S+)", log, re.IGNORECASE)
    assert owner and service, f"no demo keys in the server's output:\n{log}"
    return owner.group(1), service.group(1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`tally serve` on a new database holding the demo: SQLite with 1 worker, PostgreSQL with 2."""
    directory = tmp_path_factory.mktemp(f"serve-{request.param}")
    drop = None
    if request.param == "sqlite":
        url, workers = f"sqlite:///{directory / 'tally.db'}", 1
    else:
        url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
        workers = 2
    env = {**os.environ, "TALLY_DATABASE_URL": url}
    env["TALLY_DEMO_KEYS_FILE"] = str(directory / "demo-keys.json")
    env.pop("TALLY_PLANS", None)
    log_path = directory / "server.log"
    try:
        with ExitStack() as running:
            page = running.enter_context(tally_serve(env, log_path, "--demo", workers=workers))
            owner, service = _demo_keys(log_path.read_text())
            served = Server(page.base, owner, service, request.param, workers, log_path)
            if request.param == "postgresql":
                writer = running.enter_context(tally_serve(env, directory / "writer.log"))
                served.writer = writer.base
            yield served
    finally:
        if drop:
            drop()


@dataclass
class Watch:
    """What the browser did: requests, console errors, uncaught exceptions."""

    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to any origin but the page's."""
        origin = urlsplit(self.base)
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
            if (scheme, parts.netloc) != (origin.scheme, origin.netloc):
                foreign.append(url)
        return foreign


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    """One Chromium per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def watch(server: Server) -> Watch:
    return Watch(server.base)


@pytest.fixture
def context(browser: Any, server: Server, watch: Watch) -> Iterator[Any]:
    """A fresh browser context (1440x900, the viewer in Europe/Paris) that records every request
    and console error; a test fails when the page logged an error or left its origin."""
    context = browser.new_context(
        base_url=server.base,
        viewport={"width": 1440, "height": 900},
        timezone_id=TIMEZONE,
        locale="en-GB",
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    context.on("request", lambda request: watch.requests.append(request.url))
    context.on(
        "console",
        lambda message: (
            watch.errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    context.on("weberror", lambda error: watch.errors.append(f"uncaught: {error.error}"))
    yield context
    context.close()
    assert watch.errors == [], watch.errors
    assert watch.foreign_requests() == [], watch.foreign_requests()


@pytest.fixture
def page(context: Any, server: Server) -> Any:
    """The page signed in with the demo owner's key through the URL fragment, loaded."""
    opened = context.new_page()
    opened.goto(f"/#key={server.owner_key}")
    opened.wait_for_selector(".meter[data-resource='tokens'] .meter-display:not(:empty)")
    return opened


def artifact(name: str) -> Path:
    """A path under test-artifacts/web/ for a screenshot or a measurement."""
    directory = ARTIFACTS / "web"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name
