"""Two real worker processes on PostgreSQL share one organization's token limit exactly."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_postgres_database
from tests.support import tally_serve

pytestmark = pytest.mark.anyio

LIMIT = 5_000
PLANS = f"""
[plans.metered]
name = "Metered"
price_monthly = "10.00"
currency = "EUR"
[plans.metered.limits]
tokens = {LIMIT}
"""


@pytest.fixture
def server(postgres_admin_url: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    url, drop = create_postgres_database(postgres_admin_url)
    plans = tmp_path / "plans.toml"
    plans.write_text(PLANS)
    env = {**os.environ, "TALLY_DATABASE_URL": url, "TALLY_PLANS": str(plans)}
    created = subprocess.run(
        [sys.executable, "-m", "tally.cli", "create-org", "--name", "Busy", "--plan", "metered"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    keys = json.loads(created.stdout)
    try:
        with tally_serve(env, tmp_path / "server.log", workers=2, seconds=60) as served:
            yield served.base, keys["service_api_key"], keys["owner_api_key"]
    finally:
        drop()


async def test_two_workers_32_clients_never_pass_the_limit(
    server: tuple[str, str, str],
) -> None:
    base, service_key, owner_key = server
    rng = random.Random(2026)
    planned = [(f"evt-{i}", rng.randint(1, 40)) for i in range(400)]
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in planned:
        queue.put_nowait(item)
    answers: dict[str, dict[str, object]] = {}
    replays: list[dict[str, object]] = []
    headers = {"Authorization": f"Bearer {service_key}"}

    async def client(worker: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            while not queue.empty():
                key, amount = queue.get_nowait()
                body = {"events": [{"resource": "tokens", "amount": amount,
                                    "idempotency_key": key, "model": "gpt-4o"}]}  # fmt: skip
                response = await http.post("/v1/usage", json=body)
                assert response.status_code == 200, response.text
                result = response.json()["results"][0]
                answers[key] = {**result, "amount": amount}
                if result["status"] == "accepted" and worker % 2 == 0:
                    again = await http.post("/v1/usage", json=body)
                    replays.append(again.json()["results"][0])

    await asyncio.gather(*(client(worker) for worker in range(32)))
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await http.post(
            "/graphql", json={"query": "{ organization { usage { tokens { used limit } } } }"},
            headers={"Authorization": f"Bearer {owner_key}"},
        )  # fmt: skip
    counter = page.json()["data"]["organization"]["usage"]["tokens"]["used"]
    accepted = [a for a in answers.values() if a["status"] == "accepted"]
    rejected = [a for a in answers.values() if a["status"] == "rejected"]
    assert len(answers) == len(planned)
    assert sum(int(a["amount"]) for a in accepted) == counter  # type: ignore[call-overload]
    assert counter <= LIMIT
    assert rejected, "the load passes the limit, so some requests must be refused"
    assert all(int(a["amount"]) > LIMIT - counter for a in rejected)  # type: ignore[call-overload]
    assert replays and all(r["status"] == "duplicate" for r in replays)
    assert all(r["error"] is None for r in replays)
