"""Authentication cached per process: a key is read once per bound, a change made in this
process is seen at once, one made by another process within the bound, and a key's expiry
and last use are kept exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import anyio
import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from core.auth import Authenticator
from core.auth_cache import KeyAccess, KeyCache
from core.clock import FrozenClock
from core.config import ConfigError, Settings
from core.db import driver_url
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.graph.test_access import CREATE_KEY, REMOVE, member_with_key, mutate
from tests.graph.test_statement_count import counting

pytestmark = pytest.mark.anyio

CHECK = {"events": [{"resource": "tokens", "amount": 1}]}
KEYS = "{ organization { apiKeys { id name } } }"
REVOKE = """mutation($id: ID!) {
  revokeApiKey(apiKeyId: $id) { __typename ... on Error { code message } }
}"""
CHANGE_PLAN = """mutation {
  changePlan(planId: "scale", timing: NOW, idempotencyKey: "up") { __typename }
}"""
PLAN = "{ organization { plan { id } } }"
LONG = 60.0
"""A bound no test waits for: what such a test sees is not the bound passing."""
SHORT = 0.3


@pytest.fixture
def cache_seconds() -> float:
    return LONG


@pytest.fixture
def settings(database_url: str, cache_seconds: float) -> Settings:
    return Settings(database_url=database_url, auth_cache_seconds=cache_seconds)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


async def authenticates(client: httpx.AsyncClient, key: str) -> bool:
    """Whether `/v1/usage/check` takes the key (401 when it does not)."""
    response = await client.post(
        "/v1/usage/check", json=CHECK, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def key_reads(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT") and "api_keys" in s]


def key_writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("UPDATE API_KEYS")]


@contextmanager
def another_process(runtime: Runtime) -> Iterator[Engine]:
    """A connection of its own to the database, as another worker has (no ORM session, so
    nothing of this process hears of its changes)."""
    engine = create_engine(driver_url(runtime.settings.database_url, asynchronous=False))
    try:
        with engine.connect():
            pass
        yield engine
    finally:
        engine.dispose()


def revoke_owner_key(engine: Engine, organization_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP "
                "WHERE organization_id = :organization AND name = 'owner key'"
            ),
            {"organization": organization_id},
        )


@pytest.mark.parametrize("cache_seconds", [LONG, 0.0])
async def test_a_key_is_read_once_per_bound_however_many_requests(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, cache_seconds: float
) -> None:
    account = await open_org()
    with counting(runtime) as statements:
        for _ in range(5):
            assert await authenticates(client, account.service_api_key)
    assert len(key_reads(statements)) == (1 if cache_seconds else 5), statements


async def test_a_key_revoked_through_the_api_is_refused_at_once(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    service_key = account.service_api_key
    assert await authenticates(client, service_key)
    keys = await mutate(client, account.owner_api_key, KEYS)
    service_id = next(key["id"] for key in keys["apiKeys"] if key["name"] == "service key")
    revoked = await mutate(client, account.owner_api_key, REVOKE, id=service_id)
    assert revoked["__typename"] == "ApiKeyRevoked"
    assert not await authenticates(client, service_key)
    assert await authenticates(client, account.owner_api_key)


async def test_a_removed_members_keys_are_refused_at_once(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    member_id, member_key = await member_with_key(
        client, account.owner_api_key, "admin@example.com", "ADMIN"
    )
    assert await authenticates(client, member_key)
    removed = await mutate(client, account.owner_api_key, REMOVE, id=member_id)
    assert removed["__typename"] == "MemberRemoved"
    assert not await authenticates(client, member_key)


async def test_a_change_to_the_organization_is_seen_at_once(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(plan="starter")
    key = account.owner_api_key
    assert (await mutate(client, key, PLAN))["plan"]["id"] == "starter"
    changed = await mutate(client, key, CHANGE_PLAN)
    assert changed["__typename"] == "PlanChanged", changed
    assert (await mutate(client, key, PLAN))["plan"]["id"] == "scale"


async def test_a_key_revoked_by_another_process_works_until_the_bound(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    ticks = Ticks()
    runtime.authenticator = Authenticator(runtime.db, runtime.clock, 2.0, monotonic=ticks)
    account = await open_org()
    key = account.owner_api_key
    with another_process(runtime) as elsewhere:
        assert await authenticates(client, key)
        revoke_owner_key(elsewhere, account.organization.id)
    ticks.seconds += 1.5
    assert await authenticates(client, key), "within the bound, as read"
    ticks.seconds += 0.5
    assert not await authenticates(client, key), "the bound passed: read again"


@pytest.mark.parametrize("cache_seconds", [SHORT])
async def test_the_bound_is_the_setting_in_real_time(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    key = account.owner_api_key
    with another_process(runtime) as elsewhere:
        started = anyio.current_time()
        assert await authenticates(client, key)
        revoke_owner_key(elsewhere, account.organization.id)
    still = await authenticates(client, key)
    assert anyio.current_time() - started < SHORT, "too slow to see the bound: nothing shown"
    assert still, "within the bound, as read"
    await anyio.sleep(SHORT)
    assert not await authenticates(client, key)


async def test_a_cached_key_stops_at_its_expiry(
    client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    account = await open_org()
    expires = clock.now() + timedelta(minutes=5)
    created = await mutate(
        client,
        account.owner_api_key,
        CREATE_KEY,
        name="temporary",
        role="ADMIN",
        expiresAt=expires.isoformat(),
    )
    secret = created["secret"]
    assert await authenticates(client, secret)
    clock.set(expires - timedelta(microseconds=1))
    assert await authenticates(client, secret)
    clock.set(expires)
    assert not await authenticates(client, secret), "expired, though its entry is fresh"


async def test_a_keys_last_use_is_written_once_a_minute(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    account = await open_org()
    with counting(runtime) as statements:
        for _ in range(5):
            assert await authenticates(client, account.service_api_key)
    assert len(key_writes(statements)) == 1, statements
    clock.advance(timedelta(seconds=59))
    with counting(runtime) as statements:
        for _ in range(5):
            assert await authenticates(client, account.service_api_key)
    assert key_writes(statements) == []
    clock.advance(timedelta(seconds=1))
    with counting(runtime) as statements:
        for _ in range(5):
            assert await authenticates(client, account.service_api_key)
    assert len(key_writes(statements)) == 1, statements


def access(key_id: str, organization_id: str = "org") -> KeyAccess:
    return KeyAccess(
        id=key_id,
        organization_id=organization_id,
        role=None,
        service=True,
        member_id=None,
        prefix="tally_",
        revoked_at=None,
        expires_at=None,
        last_used_at=None,
        organization={},
    )


def test_the_cache_keeps_the_most_recently_used_entries() -> None:
    cache = KeyCache(LONG, size=2)
    for name in ("a", "b"):
        cache.put(name, access(name), cache.generation)
    assert cache.get("a") is not None
    cache.put("c", access("c"), cache.generation)
    assert len(cache) == 2
    assert cache.get("b") is None, "the least recently used is dropped"
    assert cache.get("a") is not None and cache.get("c") is not None


def test_a_read_that_overlaps_a_change_is_not_kept() -> None:
    cache = KeyCache(LONG)
    generation = cache.generation
    cache.forget("org")
    cache.put("a", access("a"), generation)
    assert cache.get("a") is None
    cache.put("a", access("a"), cache.generation)
    assert cache.get("a") is not None
    cache.forget("other")
    assert cache.get("a") is not None
    cache.forget("org")
    assert cache.get("a") is None


@pytest.mark.parametrize(
    ("value", "seconds"), [("", 2.0), ("0", 0.0), ("0.5", 0.5), (" 2 ", 2.0), ("60", 60.0)]
)
def test_the_bound_is_read_from_the_environment(value: str, seconds: float) -> None:
    assert Settings.from_env({"TALLY_AUTH_CACHE_SECONDS": value}).auth_cache_seconds == seconds


@pytest.mark.parametrize("value", ["-1", "61", "two", "nan", "inf"])
def test_a_bad_bound_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="TALLY_AUTH_CACHE_SECONDS"):
        Settings.from_env({"TALLY_AUTH_CACHE_SECONDS": value})


async def test_each_request_gets_its_own_organization(runtime: Runtime, open_org: OpenOrg) -> None:
    account = await open_org()
    first = await runtime.authenticator.authenticate(account.owner_api_key)
    second = await runtime.authenticator.authenticate(account.owner_api_key)
    assert first is not None and second is not None
    assert first[1] is not second[1], "a request may change its copy"
    first[1].spend_cap_minor = 1
    assert second[1].spend_cap_minor is None
    assert second[1].model_dump() == account.organization.model_dump()


async def test_concurrent_first_requests_write_the_last_use_once(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    answers: list[bool] = []

    async def request() -> None:
        answers.append(await authenticates(client, account.service_api_key))

    with counting(runtime) as statements:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(request)
    assert answers == [True] * 8
    assert len(key_writes(statements)) == 1, statements
