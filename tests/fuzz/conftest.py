"""A real Tally server for the fuzz tests: uvicorn in a thread of its own (its own event
loop), on a migrated database with one organization whose owner's key the fuzzers use.

`TALLY_FUZZ_EXAMPLES` sets how many examples each fuzz test draws (default: a bounded number
that keeps `make test` fast; run e.g. `TALLY_FUZZ_EXAMPLES=100` for a long run).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from billing.accounts import OpenedAccount, open_account
from core.config import Settings
from tally.app import create_app
from tally.runtime import build_runtime
from tests.support import free_port

FUZZ_EXAMPLES = int(os.environ.get("TALLY_FUZZ_EXAMPLES", "8"))
"""Examples per fuzz test (per GraphQL operation for schemathesis)."""
REQUEST_TIMEOUT = 10.0
"""A request that takes longer is a time-out: a failure."""


@dataclass(frozen=True)
class Served:
    """A running server and the keys of its organization."""

    url: str
    owner_key: str
    service_key: str


async def _open(settings: Settings) -> OpenedAccount:
    runtime = build_runtime(settings)
    try:
        async with runtime.db.write() as session:
            return await open_account(
                session,
                runtime.engine,
                runtime.catalog,
                name="Fuzz",
                plan_id="ecommerce-enterprise",
                owner_email=f"fuzz-{uuid.uuid4().hex[:8]}@example.com",
            )
    finally:
        await runtime.db.dispose()


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[Served]:
    """Tally served over HTTP for the module's tests."""
    settings = Settings(database_url=database_url)
    account = asyncio.run(_open(settings))
    port = free_port()
    config = uvicorn.Config(
        create_app(build_runtime(settings)),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fuzz-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fuzz server did not start")
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", account.owner_api_key, account.service_api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
