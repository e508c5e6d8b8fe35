"""usageChanged across real workers: `tally serve --workers 2` on PostgreSQL, where a write
on one worker reaches subscribers on every worker through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import create_postgres_database
from tests.support import SMALL_PLANS, tally_serve

pytestmark = pytest.mark.anyio

SUBSCRIBE = (
    "subscription { usageChanged { usage { percentUsed tokens { used limit } } "
    "thresholdsCrossed { resource threshold kind } } }"
)
PROTOCOL = "graphql-transport-ws"
SUBSCRIBERS = 8


@dataclass(frozen=True)
class Server:
    base: str
    database_url: str
    organizations: list[dict[str, str]]

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/graphql"


@pytest.fixture(scope="module")
def server(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url, drop = create_postgres_database(postgres_admin_url)
    directory = tmp_path_factory.mktemp("live")
    plans = directory / "plans.toml"
    plans.write_text(SMALL_PLANS.replace("tokens = 1000", "tokens = 1000000"))
    env = {**os.environ, "TALLY_DATABASE_URL": url, "TALLY_PLANS": str(plans)}
    organizations = [
        json.loads(
            subprocess.run(
                [sys.executable, "-m", "tally.cli", "create-org", "--name", name,
                 "--plan", "small"],
                env=env, capture_output=True, text=True, check=True, timeout=60,
            ).stdout
        )
        for name in ("Watched", "Other", "Bursty", "Revoked")
    ]  # fmt: skip
    try:
        with tally_serve(env, directory / "server.log", workers=2, seconds=60) as served:
            deadline = time.monotonic() + 60
            while _listeners(url) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            yield Server(served.base, url, organizations)
    finally:
        drop()


async def _receive(websocket: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), within))
    return message


async def _subscriber(server: Server, key: str) -> ClientConnection:
    websocket = await connect(server.ws, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
    await websocket.send(json.dumps(init))
    assert await _receive(websocket) == {"type": "connection_ack"}
    subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}
    await websocket.send(json.dumps(subscribe))
    return websocket


def _used(message: dict[str, Any]) -> int:
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return int(message["payload"]["data"]["usageChanged"]["usage"]["tokens"]["used"])


async def _record(server: Server, service_key: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        response = await http.post(
            "/v1/usage",
            json={"events": [{"resource": "tokens", "amount": amount,
                              "idempotency_key": uuid.uuid4().hex}]},
            headers={"Authorization": f"Bearer {service_key}"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "accepted"


def _listeners(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = 'LISTEN tally_usage'"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_write_on_one_worker_reaches_subscribers_on_both_within_2_seconds(
    server: Server,
) -> None:
    watched = server.organizations[0]
    assert _listeners(server.database_url) == 2, "each worker LISTENs on one connection"
    subscribers = [await _subscriber(server, watched["owner_api_key"]) for _ in range(SUBSCRIBERS)]
    try:
        for websocket in subscribers:
            assert _used(await _receive(websocket)) == 0
        delays = []
        for round_ in range(1, 4):
            started = time.monotonic()
            await _record(server, watched["service_api_key"], 100)
            for websocket in subscribers:
                assert _used(await _receive(websocket, within=2.0)) == 100 * round_
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.3)
        assert max(delays) < 2.0, delays
    finally:
        for websocket in subscribers:
            await websocket.close()


async def test_a_burst_of_50_writes_gives_a_few_updates_the_last_with_the_final_used(
    server: Server,
) -> None:
    bursty = server.organizations[2]
    websocket = await _subscriber(server, bursty["owner_api_key"])
    try:
        assert _used(await _receive(websocket)) == 0
        started = time.monotonic()
        await asyncio.gather(*(_record(server, bursty["service_api_key"], 1) for _ in range(50)))
        elapsed = time.monotonic() - started
        used: list[int] = []
        while not used or used[-1] != 50:
            used.append(_used(await _receive(websocket, within=2.0)))
        assert used == sorted(used)
        assert len(used) <= elapsed / 0.25 + 2, (used, elapsed)
        assert len(used) < 50
        with pytest.raises(TimeoutError):
            await _receive(websocket, within=0.6)
    finally:
        await websocket.close()


async def test_another_organizations_key_cannot_subscribe_to_it(server: Server) -> None:
    watched, other = server.organizations[0], server.organizations[1]
    websocket = await connect(server.ws, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    try:
        init = {"type": "connection_init",
                "payload": {"Authorization": f"Bearer {other['owner_api_key']}"}}  # fmt: skip
        await websocket.send(json.dumps(init))
        assert await _receive(websocket) == {"type": "connection_ack"}
        query = (
            "subscription($id: ID) { usageChanged(organizationId: $id) { usage { percentUsed } } }"
        )
        payload = {"query": query, "variables": {"id": watched["organization_id"]}}
        await websocket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        refused = await _receive(websocket)
        assert refused["payload"] == {"data": None, "errors": [{"message": "no such organization"}]}
        assert await _receive(websocket) == {"id": "1", "type": "complete"}
    finally:
        await websocket.close()


async def test_a_revoked_keys_connection_is_closed_within_a_few_seconds(server: Server) -> None:
    owner = server.organizations[3]["owner_api_key"]
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:

        async def graphql(query: str, **variables: Any) -> dict[str, Any]:
            response = await http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {owner}"},
            )
            data: dict[str, Any] = response.json()["data"]
            return data

        created = (
            await graphql(
                'mutation { createApiKey(name: "watcher", role: MEMBER) { '
                "... on CreatedApiKey { apiKey { id } secret } } }"
            )
        )["createApiKey"]
        websocket = await _subscriber(server, created["secret"])
        try:
            assert _used(await _receive(websocket)) == 0
            await graphql(
                "mutation($id: ID!) { revokeApiKey(apiKeyId: $id) { __typename } }",
                id=created["apiKey"]["id"],
            )
            revoked_at = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                await _receive(websocket, within=10)
            assert time.monotonic() - revoked_at < 5
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        finally:
            await websocket.close()


async def test_a_bad_key_in_connection_init_is_refused(server: Server) -> None:
    async with connect(server.ws, subprotocols=[PROTOCOL]) as websocket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"Authorization": "Bearer tally_wrong"}}
        await websocket.send(json.dumps(init))
        with pytest.raises(ConnectionClosed) as closed:
            await _receive(websocket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
