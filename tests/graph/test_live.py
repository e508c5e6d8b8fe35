"""usageChanged in-process: the real ASGI app (with its lifespan) served by uvicorn in the
test's event loop, and a graphql-transport-ws client (`websockets`), on SQLite (in-process
broadcast) and on PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from billing.accounts import OpenedAccount
from core.orgs import Role
from tally.app import create_app
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import SMALL_PLANS, free_port, member_key

pytestmark = pytest.mark.anyio

SUBSCRIBE = (
    "subscription($id: ID) { usageChanged(organizationId: $id) { "
    "usage { percentUsed tokens { used limit display } resources { key used } } "
    "thresholdsCrossed { resource threshold kind crossedAt } } }"
)
PROTOCOL = "graphql-transport-ws"
WAIT = 5.0


@pytest.fixture
def plans() -> str:
    return SMALL_PLANS


@pytest.fixture
async def base(runtime: Runtime) -> AsyncIterator[str]:
    """The app served on a free port, lifespan included (it starts the usage hub)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), port=port, lifespan="on", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _receive(websocket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), WAIT))
    return message


async def _open(base: str, key: str) -> ClientConnection:
    websocket = await connect(f"ws://{base}/graphql", subprotocols=[PROTOCOL])  # type: ignore[list-item]
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
    await websocket.send(json.dumps(init))
    assert await _receive(websocket) == {"type": "connection_ack"}
    return websocket


async def _subscribe(websocket: ClientConnection, organization_id: str | None = None) -> None:
    payload = {"query": SUBSCRIBE, "variables": {"id": organization_id}}
    await websocket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))


async def _next(websocket: ClientConnection) -> dict[str, Any]:
    message = await _receive(websocket)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    changed: dict[str, Any] = message["payload"]["data"]["usageChanged"]
    return changed


async def _record(base: str, account: OpenedAccount, amount: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        response = await http.post(
            "/v1/usage",
            json={"events": [{"resource": "tokens", "amount": amount,
                              "idempotency_key": uuid.uuid4().hex}]},
            headers={"Authorization": f"Bearer {account.service_api_key}"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "accepted"


async def test_a_committed_write_is_pushed_with_the_thresholds_it_crossed(
    base: str, open_org: OpenOrg
) -> None:
    account = await open_org("small")
    async with await _open(base, account.owner_api_key) as websocket:
        await _subscribe(websocket)
        first = await _next(websocket)
        assert first["usage"]["tokens"]["used"] == 0
        assert first["thresholdsCrossed"] == []
        await _record(base, account, 850)
        pushed = await _next(websocket)
        assert pushed["usage"]["tokens"] == {"used": 850, "limit": 1000, "display": "850 / 1.0K"}
        assert pushed["usage"]["percentUsed"] == pytest.approx(85.0)
        crossed = [(t["resource"], t["threshold"], t["kind"]) for t in pushed["thresholdsCrossed"]]
        assert crossed == [("tokens", 80, "LIMIT")]
        await _record(base, account, 10)
        again = await _next(websocket)
        assert again["usage"]["tokens"]["used"] == 860
        assert again["thresholdsCrossed"] == [], "a threshold is pushed once"


async def test_a_burst_is_coalesced_and_ends_with_the_final_state(
    base: str, open_org: OpenOrg
) -> None:
    account = await open_org("small")
    async with await _open(base, account.owner_api_key) as websocket:
        await _subscribe(websocket)
        assert (await _next(websocket))["usage"]["tokens"]["used"] == 0
        await asyncio.gather(*(_record(base, account, 1) for _ in range(30)))
        used: list[int] = []
        while not used or used[-1] != 30:
            used.append((await _next(websocket))["usage"]["tokens"]["used"])
        assert used == sorted(used)
        assert len(used) < 10, used
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(websocket.recv(), 0.6)


async def test_another_organizations_key_sees_nothing_of_it(base: str, open_org: OpenOrg) -> None:
    mine, theirs = await open_org("small"), await open_org("small")
    async with await _open(base, theirs.owner_api_key) as websocket:
        await _subscribe(websocket, mine.organization.id)
        refused = await _receive(websocket)
        assert refused["type"] == "next", refused
        assert refused["payload"] == {
            "data": None,
            "errors": [{"message": "no such organization"}],
        }, "answered as for an organization that does not exist"
        assert await _receive(websocket) == {"id": "1", "type": "complete"}


async def test_a_service_key_may_not_subscribe(base: str, open_org: OpenOrg) -> None:
    account = await open_org("small")
    async with await _open(base, account.service_api_key) as websocket:
        await _subscribe(websocket)
        refused = await _receive(websocket)
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_any_member_may_subscribe(base: str, open_org: OpenOrg, runtime: Runtime) -> None:
    account = await open_org("small")
    key = await member_key(runtime, account, Role.MEMBER)
    async with await _open(base, key) as websocket:
        await _subscribe(websocket)
        assert (await _next(websocket))["usage"]["tokens"]["limit"] == 1000


@pytest.mark.parametrize("payload", [{}, {"Authorization": "Bearer tally_nope"}, {"x": 1}])
async def test_a_bad_key_in_connection_init_is_refused(base: str, payload: dict[str, Any]) -> None:
    async with connect(f"ws://{base}/graphql", subprotocols=[PROTOCOL]) as websocket:  # type: ignore[list-item]
        await websocket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await _receive(websocket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def _graphql(base: str, key: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


CREATE_KEY = (
    'mutation { createApiKey(name: "live", role: MEMBER) { '
    "__typename ... on CreatedApiKey { apiKey { id } secret } } }"
)
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(apiKeyId: $id) { __typename } }"


async def test_a_revoked_keys_connection_is_closed(base: str, open_org: OpenOrg) -> None:
    account = await open_org("small")
    created = (await _graphql(base, account.owner_api_key, CREATE_KEY))["createApiKey"]
    assert created["__typename"] == "CreatedApiKey", created
    async with await _open(base, created["secret"]) as websocket:
        await _subscribe(websocket)
        await _next(websocket)
        revoked = await _graphql(
            base, account.owner_api_key, REVOKE_KEY, id=created["apiKey"]["id"]
        )
        assert revoked["revokeApiKey"]["__typename"] == "ApiKeyRevoked"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await _receive(websocket)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "API key revoked")
