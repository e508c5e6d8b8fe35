"""The `/v1` machine hot path through the real ASGI app: usage, checks, reservations, auth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from core.orgs import Organization, Role
from core.orgs import repository as orgs_repository
from tally.runtime import Runtime
from tests.conftest import START, OpenOrg
from tests.support import SMALL_PLANS, member_key

pytestmark = pytest.mark.anyio


MIB = 1024 * 1024
ENDPOINTS = (
    "/v1/usage",
    "/v1/usage/check",
    "/v1/reservations",
    "/v1/reservations/whatever/commit",
    "/v1/reservations/whatever/release",
)
ZERO = {"tokens": 0, "documents": 0, "agents": 0, "seats": 1}


@pytest.fixture
def plans() -> str:
    return SMALL_PLANS


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org(plan="small", name="A")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(
    client: httpx.AsyncClient, key: str | None, path: str, body: Any = None, **kwargs: Any
) -> httpx.Response:
    headers = bearer(key) if key is not None else {}
    if body is not None:
        kwargs["json"] = body
    return await client.post(path, headers=headers, **kwargs)


async def record(client: httpx.AsyncClient, key: str, *events: dict[str, Any]) -> httpx.Response:
    return await post(client, key, "/v1/usage", {"events": list(events)})


def event(resource: str, amount: Any, key: Any, **more: Any) -> dict[str, Any]:
    return {"resource": resource, "amount": amount, "idempotency_key": key, **more}


def accepted(key: str, used: int, limit: int, remaining: int) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "status": "accepted",
        "used": used,
        "limit": limit,
        "remaining": remaining,
        "error": None,
    }


def duplicate(key: str, used: int, limit: int, remaining: int) -> dict[str, Any]:
    return {**accepted(key, used, limit, remaining), "status": "duplicate"}


async def decisions(client: httpx.AsyncClient, key: str, *events: Any) -> list[dict[str, Any]]:
    """Records `events` in one request, answered 200 with `{"results": [...]}`; the results."""
    response = await record(client, key, *events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["results"], body
    results: list[dict[str, Any]] = body["results"]
    return results


async def record_one(client: httpx.AsyncClient, key: str, one: dict[str, Any]) -> dict[str, Any]:
    """Records one event; its decision."""
    [decision] = await decisions(client, key, one)
    return decision


async def used(runtime: Runtime, organization: Organization) -> dict[str, int]:
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, organization)
    return {meter.resource.key: meter.used for meter in snapshot.resources}


async def remaining(runtime: Runtime, organization: Organization, resource: str) -> int | None:
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, organization)
    return snapshot.get(resource).remaining


# --- recording usage -------------------------------------------------------------------------


async def test_a_single_event_is_accepted_with_used_limit_and_remaining(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    recorded = await decisions(
        client,
        account.service_api_key,
        event("tokens", 300, "e-1", model="gpt-4o", action="chat_reply"),
    )
    assert recorded == [accepted("e-1", 300, 1000, 700)]
    assert await used(runtime, account.organization) == {**ZERO, "tokens": 300}


async def test_a_batch_answers_in_input_order_and_a_later_replay_counts_nothing(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    recorded = await decisions(
        client,
        account.service_api_key,
        event("tokens", 600, "a"),
        event("agents", 1, "b", agent_id="agent-1"),
        event("tokens", 500, "c"),
        event("tokens", 400, "d"),
        event("tokens", 600, "a"),
    )
    assert recorded == [
        accepted("a", 600, 1000, 400),
        accepted("b", 1, 2, 1),
        {
            "idempotency_key": "c",
            "status": "rejected",
            "used": 600,
            "limit": 1000,
            "remaining": 400,
            "error": {
                "code": "LIMIT_EXCEEDED",
                "message": "tokens: 500 more would pass the limit of 1000 (600 used)",
            },
        },
        accepted("d", 1000, 1000, 0),
        duplicate("a", 600, 1000, 400),
    ]
    assert await used(runtime, account.organization) == {**ZERO, "tokens": 1000, "agents": 1}

    replay = await decisions(
        client,
        account.service_api_key,
        event("agents", 1, "b", agent_id="agent-1"),
        event("tokens", 600, "a"),
        event("tokens", 400, "d"),
    )
    assert replay == [
        duplicate("b", 1, 2, 1),
        duplicate("a", 600, 1000, 400),
        duplicate("d", 1000, 1000, 0),
    ]
    assert await used(runtime, account.organization) == {**ZERO, "tokens": 1000, "agents": 1}


async def test_a_single_event_replayed_in_a_later_request_is_a_duplicate(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    first = await record_one(client, account.service_api_key, event("tokens", 250, "once"))
    again = await record_one(client, account.service_api_key, event("tokens", 250, "once"))
    assert first == accepted("once", 250, 1000, 750)
    assert again == duplicate("once", 250, 1000, 750)
    assert (await used(runtime, account.organization))["tokens"] == 250


FUTURE = (START + timedelta(hours=1)).isoformat()

BAD_EVENTS = [
    pytest.param(
        event("voice_minutes", 1, "x"), "UNKNOWN_RESOURCE", "'voice_minutes'", id="unknown-resource"
    ),
    pytest.param(event("tokens", 1.5, "x"), "INVALID_AMOUNT", "1.5", id="float-amount"),
    pytest.param(event("tokens", "3", "x"), "INVALID_AMOUNT", '"3"', id="string-amount"),
    pytest.param(event("tokens", True, "x"), "INVALID_AMOUNT", "true", id="boolean-amount"),
    pytest.param(event("tokens", None, "x"), "INVALID_AMOUNT", "null", id="null-amount"),
    pytest.param(event("tokens", -5, "x"), "INVALID_AMOUNT", "metered", id="negative-metered"),
    pytest.param(
        {"resource": "tokens", "amount": 1},
        "MISSING_IDEMPOTENCY_KEY",
        "idempotency_key",
        id="no-key",
    ),
    pytest.param(
        event("tokens", 1, ""), "MISSING_IDEMPOTENCY_KEY", "idempotency_key", id="empty-key"
    ),
    pytest.param(
        event("tokens", 1, "   "), "MISSING_IDEMPOTENCY_KEY", "idempotency_key", id="blank-key"
    ),
    pytest.param(
        event("tokens", 1, 42), "MISSING_IDEMPOTENCY_KEY", "idempotency_key", id="number-key"
    ),
    pytest.param(event("tokens", 1, "k" * 201), "MISSING_IDEMPOTENCY_KEY", "200", id="long-key"),
    pytest.param(
        event("tokens", 1, "x", occurred_at=FUTURE), "INVALID_TIMESTAMP", "future", id="future"
    ),
    pytest.param(
        event("tokens", 1, "x", occurred_at="2026-03-15T11:00:00"),
        "INVALID_TIMESTAMP",
        "timezone",
        id="naive-time",
    ),
    pytest.param(
        event("tokens", 1, "x", occurred_at="yesterday"),
        "INVALID_TIMESTAMP",
        "ISO 8601",
        id="bad-time",
    ),
    pytest.param(
        event("tokens", 1, "x", colour="red"), "INVALID_ATTRIBUTE", "colour", id="unknown-attribute"
    ),
    pytest.param(
        event("documents", 1, "x", kind="video"), "INVALID_ATTRIBUTE", "'video'", id="bad-kind"
    ),
    pytest.param(
        event("tokens", 10, "x", input_tokens=3, output_tokens=4),
        "INVALID_ATTRIBUTE",
        "must equal amount",
        id="split-mismatch",
    ),
    pytest.param(
        {"resource": "tokens", "idempotency_key": "x"},
        "INVALID_BODY",
        'needs "amount"',
        id="no-amount",
    ),
    pytest.param("tokens", "INVALID_BODY", "object", id="not-an-object"),
]

GOOD_EVENTS = (
    event("tokens", 10, "good-tokens", model="gpt-4o"),
    event("documents", 1, "good-document", kind="product"),
    event("agents", 1, "good-agent"),
)


@pytest.mark.parametrize(("bad", "code", "needle"), BAD_EVENTS)
async def test_bad_input_is_a_400_and_a_batch_with_it_applies_nothing(
    runtime: Runtime,
    client: httpx.AsyncClient,
    account: OpenedAccount,
    bad: Any,
    code: str,
    needle: str,
) -> None:
    alone = await record(client, account.service_api_key, bad)
    assert alone.status_code == 400
    assert alone.json()["error"]["code"] == code
    assert needle in alone.json()["error"]["message"]

    batch = await record(client, account.service_api_key, GOOD_EVENTS[0], bad, *GOOD_EVENTS[1:])
    assert batch.status_code == 400
    error = batch.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == code
    assert error["message"].startswith("events[1]")
    assert needle in error["message"]
    assert await used(runtime, account.organization) == ZERO

    good = await decisions(client, account.service_api_key, *GOOD_EVENTS)
    assert [result["status"] for result in good] == ["accepted"] * 3


async def test_at_most_1000_events_in_a_batch(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    too_many = [event("tokens", 1, f"k-{i}") for i in range(1001)]
    response = await record(client, account.service_api_key, *too_many)
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "TOO_MANY_EVENTS", "message": "1001 events; at most 1000"}
    }
    assert await used(runtime, account.organization) == ZERO

    results = await decisions(client, account.service_api_key, *too_many[:1000])
    assert [r["idempotency_key"] for r in results] == [f"k-{i}" for i in range(1000)]
    assert [r["used"] for r in results] == list(range(1, 1001))
    assert {r["status"] for r in results} == {"accepted"}
    assert (await used(runtime, account.organization))["tokens"] == 1000


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with trailing whitespace to exactly `size` bytes."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


async def test_a_body_over_one_mebibyte_is_a_413(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    body = {"events": [event("tokens", 7, "big")]}
    headers = {**bearer(account.service_api_key), "Content-Type": "application/json"}
    declared = await client.post("/v1/usage", content=padded(body, MIB + 1), headers=headers)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "BODY_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:
        data = padded(body, MIB + 1)
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    streamed = await client.post("/v1/usage", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "BODY_TOO_LARGE"
    assert await used(runtime, account.organization) == ZERO

    at_the_limit = await client.post("/v1/usage", content=padded(body, MIB), headers=headers)
    assert at_the_limit.status_code == 200
    assert at_the_limit.json() == {"results": [accepted("big", 7, 1000, 993)]}


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"events": [', "INVALID_JSON"),
        (b"\xc3\x28", "INVALID_JSON"),
        (b"", "INVALID_BODY"),
        (b"[]", "INVALID_BODY"),
        (b'{"events": {}}', "INVALID_BODY"),
        (b'{"events": []}', "INVALID_BODY"),
    ],
)
async def test_a_malformed_body_is_a_400(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, content: bytes, code: str
) -> None:
    for path in ("/v1/usage", "/v1/usage/check"):
        response = await client.post(path, content=content, headers=bearer(account.service_api_key))
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["code"] == code
        assert error["message"]
    assert await used(runtime, account.organization) == ZERO


async def test_a_recent_past_timestamp_is_accepted(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    earlier = (START - timedelta(hours=2)).isoformat()
    recorded = await record_one(
        client, account.service_api_key, event("tokens", 40, "past", occurred_at=earlier)
    )
    assert recorded == accepted("past", 40, 1000, 960)
    assert (await used(runtime, account.organization))["tokens"] == 40


# --- gauges ----------------------------------------------------------------------------------


async def test_agents_are_taken_and_given_back_never_below_zero(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key

    async def agents(amount: int, idempotency_key: str) -> dict[str, Any]:
        return await record_one(client, key, event("agents", amount, idempotency_key))

    assert await agents(1, "a1") == accepted("a1", 1, 2, 1)
    assert await agents(1, "a2") == accepted("a2", 2, 2, 0)
    third = await agents(1, "a3")
    assert (third["status"], third["used"], third["error"]["code"]) == (
        "rejected",
        2,
        "LIMIT_EXCEEDED",
    )
    assert await agents(-1, "a2-gone") == accepted("a2-gone", 1, 2, 1)
    assert await agents(-1, "a1-gone") == accepted("a1-gone", 0, 2, 2)
    below = await agents(-1, "nothing-left")
    assert (below["status"], below["used"], below["remaining"]) == ("rejected", 0, 2)
    assert await agents(-1, "a1-gone") == duplicate("a1-gone", 0, 2, 2)
    assert (await used(runtime, account.organization))["agents"] == 0


async def test_documents_by_kind_are_taken_and_given_back_never_below_zero(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    results = await decisions(
        client,
        account.service_api_key,
        event("documents", 3, "products", kind="product"),
        event("documents", 2, "faqs", kind="faq"),
        event("documents", 1, "one-too-many", kind="document"),
        event("documents", -2, "products-gone", kind="product"),
        event("documents", 2, "pages", kind="web_page"),
        event("documents", -6, "too-many-gone", kind="faq"),
    )
    assert [(r["status"], r["used"], r["remaining"]) for r in results] == [
        ("accepted", 3, 2),
        ("accepted", 5, 0),
        ("rejected", 5, 0),
        ("accepted", 3, 2),
        ("accepted", 5, 0),
        ("rejected", 5, 0),
    ]
    assert (await used(runtime, account.organization))["documents"] == 5


# --- checks ----------------------------------------------------------------------------------


async def test_check_records_nothing_and_needs_no_idempotency_keys(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await record(client, account.service_api_key, event("tokens", 100, "before"))
    response = await post(
        client,
        account.service_api_key,
        "/v1/usage/check",
        {
            "events": [
                {"resource": "tokens", "amount": 850},
                {"resource": "tokens", "amount": 51},
                {"resource": "agents", "amount": 2},
                event("tokens", 100, "before"),
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [
        (r["status"], r["used"], r["limit"], r["remaining"], r["error"] and r["error"]["code"])
        for r in results
    ] == [
        ("accepted", 950, 1000, 50, None),
        ("rejected", 950, 1000, 50, "LIMIT_EXCEEDED"),
        ("accepted", 2, 2, 0, None),
        ("duplicate", 100, 1000, 900, None),
    ]
    assert all(isinstance(r["idempotency_key"], str) for r in results)
    assert await used(runtime, account.organization) == {**ZERO, "tokens": 100}

    again = await post(
        client, account.service_api_key, "/v1/usage/check", {"events": [event("tokens", 900, "x")]}
    )
    assert again.json() == {"results": [accepted("x", 1000, 1000, 0)]}
    recorded = await record_one(client, account.service_api_key, event("tokens", 900, "x"))
    assert recorded == accepted("x", 1000, 1000, 0)


async def test_check_still_validates_its_input(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    response = await post(
        client,
        account.service_api_key,
        "/v1/usage/check",
        {"events": [{"resource": "tokens", "amount": -1}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_AMOUNT"


# --- reservations ----------------------------------------------------------------------------


async def reserve(
    client: httpx.AsyncClient, key: str, amount: int, idempotency_key: str, **more: Any
) -> httpx.Response:
    body = {"resource": "tokens", "amount": amount, "idempotency_key": idempotency_key, **more}
    return await post(client, key, "/v1/reservations", body)


async def commit(
    client: httpx.AsyncClient, key: str, reservation_id: str, amount: int, **attributes: Any
) -> httpx.Response:
    return await post(
        client, key, f"/v1/reservations/{reservation_id}/commit", {"amount": amount, **attributes}
    )


async def release(client: httpx.AsyncClient, key: str, reservation_id: str) -> httpx.Response:
    return await post(client, key, f"/v1/reservations/{reservation_id}/release")


async def test_a_reservation_is_created_with_201(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    response = await reserve(client, account.service_api_key, 600, "r-1", ttl_seconds=120)
    assert response.status_code == 201
    body = response.json()
    reservation = body.pop("reservation")
    del body["remaining"]  # see test_remaining_in_a_decision_accounts_for_held_reservations
    assert body == {
        "idempotency_key": "r-1",
        "status": "accepted",
        "used": 0,
        "limit": 1000,
        "error": None,
    }
    assert isinstance(reservation.pop("id"), str)
    assert reservation == {
        "resource": "tokens",
        "amount": 600,
        "status": "held",
        "expires_at": (START + timedelta(seconds=120)).isoformat(),
        "idempotency_key": "r-1",
    }


async def test_a_reservation_replayed_answers_the_same_reservation(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    first = await reserve(client, account.service_api_key, 600, "r-1")
    again = await reserve(client, account.service_api_key, 600, "r-1")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["reservation"] == first.json()["reservation"]


async def test_a_reservation_holds_room_and_a_commit_frees_the_rest(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    held = (await reserve(client, key, 600, "job-1")).json()["reservation"]
    assert await remaining(runtime, account.organization, "tokens") == 400

    refused = await record_one(client, key, event("tokens", 500, "too-big"))
    assert (refused["status"], refused["used"], refused["error"]["code"]) == (
        "rejected",
        0,
        "LIMIT_EXCEEDED",
    )
    fits = await record_one(client, key, event("tokens", 400, "fits"))
    assert (fits["status"], fits["used"]) == ("accepted", 400)
    assert await remaining(runtime, account.organization, "tokens") == 0

    committed = await commit(client, key, held["id"], 250, model="gpt-4o")
    assert committed.status_code == 200
    assert committed.json() == accepted("job-1", 650, 1000, 350)
    assert await remaining(runtime, account.organization, "tokens") == 350

    twice = await commit(client, key, held["id"], 250, model="gpt-4o")
    assert twice.status_code == 200
    assert twice.json() == duplicate("job-1", 650, 1000, 350)
    assert (await used(runtime, account.organization))["tokens"] == 650

    rest = await record_one(client, key, event("tokens", 350, "rest"))
    assert (rest["status"], rest["used"], rest["remaining"]) == ("accepted", 1000, 0)


async def test_remaining_in_a_decision_accounts_for_held_reservations(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    await reserve(client, key, 600, "job-1")
    refused = await record_one(client, key, event("tokens", 500, "too-big"))
    assert (refused["status"], refused["remaining"]) == ("rejected", 400)


async def test_a_reservation_that_does_not_fit_is_refused(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await record(client, account.service_api_key, event("tokens", 700, "used"))
    response = await reserve(client, account.service_api_key, 301, "r-big")
    assert response.status_code == 200
    body = response.json()
    assert body["reservation"] is None
    assert (body["status"], body["used"], body["error"]["code"]) == (
        "rejected",
        700,
        "LIMIT_EXCEEDED",
    )
    assert await remaining(runtime, account.organization, "tokens") == 300


async def test_a_released_reservation_gives_its_room_back(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    held = (await reserve(client, key, 900, "r-release")).json()["reservation"]
    assert await remaining(runtime, account.organization, "tokens") == 100

    response = await release(client, key, held["id"])
    assert response.status_code == 200
    assert response.json() == {"reservation": {**held, "status": "released"}}
    assert await remaining(runtime, account.organization, "tokens") == 1000

    again = await release(client, key, held["id"])
    assert again.status_code == 200
    assert again.json() == {"reservation": {**held, "status": "released"}}
    assert await remaining(runtime, account.organization, "tokens") == 1000

    late = await commit(client, key, held["id"], 10)
    assert late.status_code == 409
    assert await used(runtime, account.organization) == ZERO
    full = await record_one(client, key, event("tokens", 1000, "all"))
    assert (full["status"], full["used"]) == ("accepted", 1000)


async def test_releasing_a_committed_reservation_is_a_409(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    held = (await reserve(client, key, 100, "r-c")).json()["reservation"]
    await commit(client, key, held["id"], 100)
    response = await release(client, key, held["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ALREADY_COMMITTED"


async def test_an_unknown_reservation_is_a_404(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    released = await release(client, account.service_api_key, "0" * 32)
    assert released.status_code == 404
    assert released.json() == {
        "error": {"code": "NOT_FOUND", "message": f"no reservation {'0' * 32!r}"}
    }
    committed = await commit(client, account.service_api_key, "0" * 32, 1)
    assert committed.status_code == 404
    assert committed.json()["error"]["code"] == "NOT_FOUND"


async def test_a_commit_after_expiry_is_a_409_and_the_room_is_free_without_a_cron(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    key = account.service_api_key
    held = (await reserve(client, key, 900, "r-exp", ttl_seconds=60)).json()["reservation"]
    refused = await record_one(client, key, event("tokens", 200, "blocked"))
    assert refused["status"] == "rejected"

    clock.advance(timedelta(seconds=59))
    assert await remaining(runtime, account.organization, "tokens") == 100
    clock.advance(timedelta(seconds=1))
    assert await remaining(runtime, account.organization, "tokens") == 1000

    response = await commit(client, key, held["id"], 500)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "RESERVATION_EXPIRED"
    assert await used(runtime, account.organization) == ZERO

    full = await record_one(client, key, event("tokens", 1000, "after"))
    assert (full["status"], full["used"], full["remaining"]) == ("accepted", 1000, 0)


async def test_a_commit_just_before_expiry_is_accepted(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    key = account.service_api_key
    held = (await reserve(client, key, 300, "r-late", ttl_seconds=60)).json()["reservation"]
    clock.advance(timedelta(seconds=60) - timedelta(microseconds=1))
    response = await commit(client, key, held["id"], 300)
    assert response.json() == accepted("r-late", 300, 1000, 700)
    assert await remaining(runtime, account.organization, "tokens") == 700


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"resource": "tokens", "amount": 0, "idempotency_key": "r"}, "INVALID_AMOUNT"),
        ({"resource": "tokens", "amount": 1.5, "idempotency_key": "r"}, "INVALID_AMOUNT"),
        ({"resource": "tokens", "amount": 10}, "MISSING_IDEMPOTENCY_KEY"),
        ({"resource": "voice", "amount": 10, "idempotency_key": "r"}, "UNKNOWN_RESOURCE"),
        (
            {"resource": "tokens", "amount": 10, "idempotency_key": "r", "ttl_seconds": "60"},
            "INVALID_TTL",
        ),
        (
            {"resource": "tokens", "amount": 10, "idempotency_key": "r", "ttl_seconds": 0},
            "INVALID_TTL",
        ),
        ({"amount": 10, "idempotency_key": "r"}, "INVALID_BODY"),
    ],
)
async def test_a_bad_reservation_is_a_400(
    runtime: Runtime,
    client: httpx.AsyncClient,
    account: OpenedAccount,
    body: dict[str, Any],
    code: str,
) -> None:
    response = await post(client, account.service_api_key, "/v1/reservations", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert await remaining(runtime, account.organization, "tokens") == 1000


# --- authentication and authorization -------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("secret", [None, "tally_not-a-real-key", "garbage"])
async def test_no_key_or_an_unknown_key_is_a_401(
    client: httpx.AsyncClient, path: str, secret: str | None
) -> None:
    response = await post(client, secret, path, {"events": [event("tokens", 1, "k")]})
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "UNAUTHENTICATED",
            "message": "a valid API key is required: send the header Authorization: Bearer <key>",
        }
    }


async def test_a_revoked_key_is_a_401(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    ok = await record(client, account.service_api_key, event("tokens", 1, "before"))
    assert ok.status_code == 200
    async with runtime.db.write() as session:
        await orgs_repository.revoke_api_keys(
            session, account.organization.id, ["service key"], runtime.clock.now()
        )
    response = await record(client, account.service_api_key, event("tokens", 1, "after"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert (await used(runtime, account.organization))["tokens"] == 1


@pytest.mark.parametrize("role", [Role.MEMBER, Role.BILLING])
async def test_a_member_or_billing_key_is_a_403_on_every_endpoint(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, role: Role
) -> None:
    secret = await member_key(runtime, account, role)
    for path in ENDPOINTS:
        response = await post(
            client, secret, path, {"events": [event("tokens", 1, "k")], "amount": 1}
        )
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert await used(runtime, account.organization) == ZERO


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
async def test_an_owner_or_admin_key_may_record_usage(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, role: Role
) -> None:
    secret = (
        account.owner_api_key if role is Role.OWNER else await member_key(runtime, account, role)
    )
    recorded = await record_one(client, secret, event("tokens", 5, "by-a-person"))
    assert recorded == accepted("by-a-person", 5, 1000, 995)
    assert (await used(runtime, account.organization))["tokens"] == 5


async def test_a_service_key_never_touches_another_organization(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, open_org: OpenOrg
) -> None:
    other = await open_org(plan="small", name="B")
    theirs = (await reserve(client, other.service_api_key, 300, "shared-key")).json()
    await record(client, other.service_api_key, event("tokens", 100, "shared-event"))
    before = await used(runtime, other.organization)
    assert before == {**ZERO, "tokens": 100}

    mine = await decisions(
        client,
        account.service_api_key,
        event("tokens", 100, "shared-event"),
        event("agents", 2, "agents"),
    )
    assert [r["status"] for r in mine] == ["accepted", "accepted"]
    own = (await reserve(client, account.service_api_key, 300, "shared-key")).json()
    assert own["status"] == "accepted"
    assert own["reservation"]["id"] != theirs["reservation"]["id"]

    reservation_id = theirs["reservation"]["id"]
    assert (await commit(client, account.service_api_key, reservation_id, 300)).status_code == 404
    assert (await release(client, account.service_api_key, reservation_id)).status_code == 404

    assert await used(runtime, other.organization) == before
    assert await remaining(runtime, other.organization, "tokens") == 600
    assert await used(runtime, account.organization) == {**ZERO, "tokens": 100, "agents": 2}
    committed = await commit(client, other.service_api_key, reservation_id, 300)
    assert committed.json() == accepted("shared-key", 400, 1000, 600)
