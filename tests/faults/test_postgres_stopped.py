"""PostgreSQL stopped under load: 503 with `Retry-After` while it is away, no half-applied
batch, and Tally serves again soon after it returns, with no restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from tests.faults.support import PrivateCluster, Tally, private_cluster, serve, stored

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

CLIENTS = 8
BATCH = 3
DOWN_SECONDS = 3.0
REQUEST_BOUND_SECONDS = 5.0
"""No request may take longer than this, database away or not."""
RECOVERY_BOUND_SECONDS = 5.0


@dataclass
class Answer:
    keys: tuple[str, ...]
    status: int
    retry_after: str | None
    code: str | None
    results: list[str]
    sent: float
    seconds: float


@pytest.fixture
def tally(tmp_path: Path) -> Iterator[tuple[Tally, PrivateCluster]]:
    with private_cluster() as cluster, serve(cluster.url, tmp_path, workers=1) as running:
        yield running, cluster


async def test_postgres_stopped_under_load(tally: tuple[Tally, PrivateCluster]) -> None:
    server, cluster = tally
    headers = {"Authorization": f"Bearer {server.service_key}"}
    answers: list[Answer] = []
    amounts: dict[str, int] = {}
    stop_load = anyio.Event()

    async def post(http: httpx.AsyncClient, keys: tuple[str, ...]) -> Answer:
        events = [{"resource": "tokens", "amount": amounts[k], "idempotency_key": k} for k in keys]
        sent = time.monotonic()
        response = await http.post("/v1/usage", json={"events": events})
        body = response.json()
        ok = response.status_code == 200
        results = [r["status"] for r in body["results"]] if ok else []
        code = None if ok else body["error"]["code"]
        answer = Answer(
            keys, response.status_code, response.headers.get("Retry-After"), code, results,
            sent, time.monotonic() - sent,
        )  # fmt: skip
        answers.append(answer)
        return answer

    async def client(number: int) -> None:
        async with httpx.AsyncClient(
            base_url=server.base, headers=headers, timeout=REQUEST_BOUND_SECONDS
        ) as http:
            sequence = 0
            while not stop_load.is_set():
                size = 1 if sequence % 2 == 0 else BATCH
                keys = tuple(f"pg-{number}-{sequence}-{i}" for i in range(size))
                for index, key in enumerate(keys):
                    amounts[key] = 1 + (sequence + index) % 5
                sequence += 1
                await post(http, keys)
                await anyio.sleep(0.02)

    async with anyio.create_task_group() as load:
        for number in range(CLIENTS):
            load.start_soon(client, number)
        await anyio.sleep(1.0)
        stopped_at = time.monotonic()
        await anyio.to_thread.run_sync(cluster.stop)
        await anyio.sleep(DOWN_SECONDS)
        await anyio.to_thread.run_sync(cluster.start)
        back_at = time.monotonic()
        async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=5) as http:
            while True:
                key = f"probe-{len(amounts)}"
                amounts[key] = 1
                probe = await post(http, (key,))
                if probe.status == 200:
                    break
                assert time.monotonic() - back_at < RECOVERY_BOUND_SECONDS, probe
                await anyio.sleep(0.05)
        recovered = time.monotonic() - back_at
        await anyio.sleep(1.0)
        stop_load.set()

    statuses = {answer.status for answer in answers}
    assert statuses <= {200, 503}, [a for a in answers if a.status not in (200, 503)]
    away = [a for a in answers if stopped_at + 0.5 < a.sent < back_at - 0.5]
    assert away and all(a.status == 503 for a in away)
    refused = [a for a in answers if a.status == 503]
    assert all(a.retry_after is not None and int(a.retry_after) > 0 for a in refused)
    assert {a.code for a in refused} == {"DATABASE_UNAVAILABLE"}
    assert max(a.seconds for a in answers) < REQUEST_BOUND_SECONDS
    served_again = [a for a in answers if a.keys[0].startswith("pg-") and a.sent > back_at]
    assert any(a.status == 200 for a in served_again), "the load was not served again"

    # Nothing half-applied: each batch is stored whole or not at all; every acknowledged
    # event is stored; the counters are the sum of the stored events.
    result = stored(cluster.url, server.organization_id)
    for answer in answers:
        kept = [key in result.amounts for key in answer.keys]
        assert all(kept) or not any(kept), answer
        if answer.status == 200:
            assert all(status == "accepted" for status in answer.results), answer
            assert all(kept), answer
    assert all(result.amounts[key] == amounts[key] for key in result.amounts)
    assert result.counter == sum(result.amounts.values())
    async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
        assert (await http.get("/healthz")).status_code == 200
    assert server.process.poll() is None, "Tally was not restarted"
    print(
        f"\nPostgreSQL stopped (-m immediate) for {DOWN_SECONDS:.0f} s under load: "
        f"{len(answers)} requests, {len(refused)} answered 503 with Retry-After, "
        f"0 errors or hangs (slowest {max(a.seconds for a in answers):.2f} s); "
        f"{len(result.amounts)} events stored, counter {result.counter} = their sum; "
        f"serving again {recovered:.2f} s after PostgreSQL accepted connections"
    )
