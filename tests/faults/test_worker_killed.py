"""`kill -9` of one of two workers under consume load loses no acknowledged event and counts
none twice."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_postgres_database
from tests.faults.support import Tally, open_connections, serve, stored, worker_pids

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

EVENTS = 800
CLIENTS = 16
KILL_AFTER = 200
"""Acknowledged events before one worker is killed."""


@pytest.fixture
def tally(postgres_admin_url: str, tmp_path: Path) -> Iterator[tuple[Tally, str]]:
    url, drop = create_postgres_database(postgres_admin_url)
    try:
        with serve(url, tmp_path, workers=2) as running:
            yield running, url
    finally:
        drop()


async def test_kill_9_of_a_worker_loses_no_acknowledged_event(
    tally: tuple[Tally, str],
) -> None:
    server, url = tally
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2, f"expected two uvicorn workers, found {workers}"
    planned = {f"kill-{i}": 1 + i % 7 for i in range(EVENTS)}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in planned:
        queue.put_nowait(key)
    first_answers: dict[str, str] = {}
    """The status of each event's first answer, for those that got one."""
    lost_answers: set[str] = set()
    """Events whose first request got no answer (its worker died, the connection broke)."""
    refused: set[str] = set()
    """Events whose first request was answered 503 with `Retry-After` (nothing acknowledged;
    the shared PostgreSQL may be short of connections while other tests run)."""
    final_answers: dict[str, str] = {}
    killed = asyncio.Event()
    port = int(server.base.rsplit(":", 1)[1])
    victim: list[int] = []
    """The worker killed: the one holding the most client connections at that moment."""
    victim_connections: list[int] = []
    headers = {"Authorization": f"Bearer {server.service_key}"}

    async def post(http: httpx.AsyncClient, key: str) -> str:
        """The event's status, or "refused" for a 503 with `Retry-After`."""
        body = {"events": [{"resource": "tokens", "amount": planned[key], "idempotency_key": key}]}
        response = await http.post("/v1/usage", json=body)
        if response.status_code == 503 and response.headers.get("Retry-After"):
            return "refused"
        assert response.status_code == 200, response.text
        status: str = response.json()["results"][0]["status"]
        return status

    async def client() -> None:
        http = httpx.AsyncClient(base_url=server.base, headers=headers, timeout=10)
        try:
            while not queue.empty():
                key = queue.get_nowait()
                try:
                    status = await post(http, key)
                except httpx.TransportError:
                    lost_answers.add(key)
                    await http.aclose()  # a new connection, to a worker that lives
                    http = httpx.AsyncClient(base_url=server.base, headers=headers, timeout=10)
                else:
                    if status == "refused":
                        refused.add(key)
                    else:
                        first_answers[key] = status
                        final_answers[key] = status
                if len(first_answers) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    victim.append(max(workers, key=lambda pid: open_connections(pid, port)))
                    victim_connections.append(open_connections(victim[0], port))
                    os.kill(victim[0], signal.SIGKILL)
        finally:
            await http.aclose()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert killed.is_set() and victim_connections[0] > 0, "the killed worker served nobody"
    assert len(lost_answers) <= CLIENTS, "only requests in flight on the killed worker are cut"
    acknowledged = {key for key, status in first_answers.items() if status == "accepted"}
    after_kill = stored(url, server.organization_id)

    # Every acknowledged event is stored, with its amount; nothing is counted twice.
    assert acknowledged <= after_kill.amounts.keys()
    assert all(after_kill.amounts[key] == planned[key] for key in after_kill.amounts)
    assert after_kill.amounts.keys() <= acknowledged | lost_answers | refused
    assert after_kill.counter == sum(after_kill.amounts.values())

    # The clients retry what got no answer, with the same keys, on the surviving worker(s):
    # each retry is recorded once or answered as the duplicate it is.
    async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=10) as http:
        for key in sorted(lost_answers | refused):
            for _ in range(50):
                final_answers[key] = await post(http, key)
                if final_answers[key] != "refused":
                    break
                await asyncio.sleep(0.2)
    final = stored(url, server.organization_id)
    assert final.amounts == planned
    assert final.counter == sum(planned.values())
    assert set(final_answers.values()) <= {"accepted", "duplicate"}
    stored_by_dead_worker = {k for k in lost_answers if final_answers[k] == "duplicate"}
    assert stored_by_dead_worker <= after_kill.amounts.keys()
    print(
        f"\nkill -9 of worker {victim[0]} (holding {victim_connections[0]} of {CLIENTS} "
        f"connections) after {KILL_AFTER} answers: "
        f"{len(acknowledged)} acknowledged as accepted, {len(after_kill.amounts)} stored "
        f"({len(lost_answers)} requests lost their answer, {len(stored_by_dead_worker)} of them "
        f"stored before the worker died); counter {after_kill.counter} = sum of stored events; "
        f"{len(refused)} answered 503 with Retry-After; after retrying those without an "
        f"acknowledgement: {len(final.amounts)}/{EVENTS} stored once each"
    )
