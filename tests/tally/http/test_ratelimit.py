"""Rate limits: token buckets per key and per organization (429 + Retry-After), charged only
after authentication, and a bound on each organization's requests in flight."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest

from core.config import Rate, Settings
from core.orgs import Role
from tally.app import create_app
from tally.http.ratelimit import WAITING_PER_SLOT, Crowded, RateLimiter
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import member_key

pytestmark = pytest.mark.anyio

CHECK = {"events": [{"resource": "tokens", "amount": 1}]}
SLOW = Rate(0.001, 3)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, key_rate=SLOW, organization_rate=None)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def check(client: httpx.AsyncClient, key: str | None) -> httpx.Response:
    return await client.post("/v1/usage/check", json=CHECK, headers=bearer(key) if key else {})


async def test_a_key_past_its_burst_gets_429_with_retry_after(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    key = account.service_api_key
    assert [(await check(client, key)).status_code for _ in range(3)] == [200] * 3
    refused = await check(client, key)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    other_key = account.owner_api_key
    assert (await check(client, other_key)).status_code == 200, "a bucket per key"


async def test_graphql_answers_429_with_a_rate_limited_error(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    query = {"query": "{ organization { id } }"}
    for _ in range(3):
        response = await client.post("/graphql", json=query, headers=bearer(account.owner_api_key))
        assert response.status_code == 200
    refused = await client.post("/graphql", json=query, headers=bearer(account.owner_api_key))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == int(refused.headers["Retry-After"])


async def test_requests_without_a_valid_key_charge_no_bucket(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    for key in (None, "tally_unknown", account.service_api_key + "x"):
        assert [(await check(client, key)).status_code for _ in range(4)] == [401] * 4
    assert [(await check(client, account.service_api_key)).status_code for _ in range(3)] == [
        200
    ] * 3


async def test_the_organization_bucket_is_shared_by_its_keys_and_no_one_else(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    runtime.settings = dataclasses.replace(runtime.settings, key_rate=None, organization_rate=SLOW)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as fresh:
        busy, calm = await open_org(name="busy"), await open_org(name="calm")
        admin = await member_key(runtime, busy, Role.ADMIN)
        keys = [busy.service_api_key, busy.owner_api_key, admin]
        assert [(await check(fresh, key)).status_code for key in keys] == [200] * 3
        assert (await check(fresh, busy.service_api_key)).status_code == 429
        assert (await check(fresh, admin)).status_code == 429
        assert (await check(fresh, calm.service_api_key)).status_code == 200


async def test_an_organization_runs_at_most_its_slots_at_once_and_others_go_on() -> None:
    limiter = RateLimiter(None, None, organization_concurrency=2)
    running = {"busy": 0, "calm": 0}
    most = {"busy": 0, "calm": 0}
    release = anyio.Event()
    calm_done = anyio.Event()

    def work(name: str, done: anyio.Event | None = None) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            running[name] += 1
            most[name] = max(most[name], running[name])
            if done is None:
                await release.wait()
            running[name] -= 1
            if done is not None:
                done.set()

        return call

    async with anyio.create_task_group() as group:
        for _ in range(2 * (1 + WAITING_PER_SLOT)):
            group.start_soon(limiter.slots.run, "busy", work("busy"))
        await anyio.wait_all_tasks_blocked()
        assert running["busy"] == 2, "two in flight, the others waiting"
        with pytest.raises(Crowded):
            await limiter.slots.run("busy", work("busy"))
        group.start_soon(limiter.slots.run, "calm", work("calm", calm_done))
        with anyio.fail_after(2):
            await calm_done.wait()
        release.set()
    assert most == {"busy": 2, "calm": 1}
    assert limiter.slots.semaphores == {}
