"""The edge of every route: request ids, body caps, JSON refusals naming the field, and which
failures are the database's (503 + Retry-After) and which the server's (a JSON 500)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.config import Settings
from limits import UsageInput
from limits.batcher import GroupCommitter, Overloaded
from tally.app import create_app
from tally.http.limits import BODY_CAPS
from tally.runtime import Runtime, build_runtime
from tests.conftest import OpenOrg
from tests.support import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def post_json(client: httpx.AsyncClient, key: str, path: str, body: Any) -> httpx.Response:
    """POST `body` encoded with ASCII escapes (so lone surrogates travel as `\\ud800`)."""
    return await client.post(path, content=json.dumps(body), headers=bearer(key))


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/usage")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {
        "error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": "GET is not allowed on /v1/usage; allowed: POST",
        }
    }
    missing = await client.get("/v1/nothing")
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "no route /v1/nothing"}}


async def test_a_401_says_which_header_to_send(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/usage", json={"events": []})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <key>" in response.json()["error"]["message"]


async def test_a_misspelt_field_is_named(client: httpx.AsyncClient, account: OpenedAccount) -> None:
    event = {"resource": "tokens", "amout": 5, "idempotency_key": "typo"}
    response = await post_json(client, account.service_api_key, "/v1/usage", {"events": [event]})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_BODY",
        "message": 'events[0] needs "amount"; unknown field "amout": did you mean "amount"?',
    }
    reserve = await post_json(
        client, account.service_api_key, "/v1/reservations", {"resource": "tokens", "amont": 5}
    )
    assert 'unknown field "amont": did you mean "amount"?' in reserve.json()["error"]["message"]


@pytest.mark.parametrize(
    ("amount", "shown"), [("10", '"10"'), (10.5, "10.5"), (True, "true"), (2**64, "between")]
)
async def test_integers_follow_the_rule_of_graphql_bigint(
    client: httpx.AsyncClient, account: OpenedAccount, amount: object, shown: str
) -> None:
    event = {"resource": "tokens", "amount": amount, "idempotency_key": "int"}
    response = await post_json(client, account.service_api_key, "/v1/usage", {"events": [event]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_AMOUNT"
    assert error["message"].startswith("events[0].amount ")
    assert shown in error["message"]


@pytest.mark.parametrize(
    ("event", "where"),
    [
        ({"resource": "tokens", "amount": 1, "idempotency_key": "a\x00b"}, "idempotency_key"),
        ({"resource": "tok\ud800ens", "amount": 1, "idempotency_key": "s"}, "resource"),
        ({"resource": "tokens", "amount": 1, "idempotency_key": "m", "model": "\x00"}, "model"),
    ],
)
async def test_unacceptable_text_is_a_400_naming_the_field(
    client: httpx.AsyncClient, account: OpenedAccount, event: dict[str, Any], where: str
) -> None:
    response = await post_json(client, account.service_api_key, "/v1/usage", {"events": [event]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_TEXT"
    assert error["message"].startswith(f"events[0].{where} contains"), error


async def test_a_nul_in_a_path_is_a_400(client: httpx.AsyncClient, account: OpenedAccount) -> None:
    response = await post_json(
        client, account.service_api_key, "/v1/reservations/ab%00cd/release", {}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "the id in the path contains a NUL character (\\u0000)"
    )


@pytest.mark.parametrize("path", ["/graphql", "/v1/usage", "/webhooks/stripe"])
async def test_a_body_over_its_cap_is_a_413_before_it_is_read(
    client: httpx.AsyncClient, account: OpenedAccount, path: str
) -> None:
    cap = next(cap for prefix, cap in BODY_CAPS.items() if path.startswith(prefix))
    declared = await client.post(
        path, content=b"x" * (cap + 1), headers=bearer(account.owner_api_key)
    )
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "BODY_TOO_LARGE"
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            sent.append(1)
            yield b"x" * (64 * 1024)

    streamed = await client.post(path, content=chunks(), headers=bearer(account.owner_api_key))
    assert streamed.status_code == 413
    assert f"over {cap} bytes" in streamed.json()["error"]["message"]


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    given = await client.get("/healthz", headers={"X-Request-Id": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    odd = await client.get("/healthz", headers={"X-Request-Id": "no spaces allowed"})
    assert odd.headers["x-request-id"] != "no spaces allowed"


async def test_a_database_away_is_a_503_with_retry_after(clock: Any) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/tally"
    runtime = build_runtime(Settings(database_url=url), clock)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
            response = await client.post(
                "/v1/usage", json={"events": []}, headers=bearer("tally_" + "k" * 43)
            )
    finally:
        await runtime.db.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"


async def test_any_other_database_failure_is_a_logged_json_500(
    empty_database_url: str, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A database without Tally's tables: its failures are bugs, not outages."""
    key = "tally_" + "k" * 43
    runtime = build_runtime(Settings(database_url=empty_database_url), clock)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
            usage = await client.post("/v1/usage", json={"events": []}, headers=bearer(key))
            graph = await client.post(
                "/graphql", json={"query": "{ plans { id } }"}, headers=bearer(key)
            )
    finally:
        await runtime.db.dispose()
    for response in (usage, graph):
        assert response.status_code == 500
        request_id = response.headers["x-request-id"]
        assert response.json() == {
            "error": {
                "code": "INTERNAL_ERROR",
                "message": f"unexpected error; quote request id {request_id} when reporting it",
            }
        }
        logged = [r for r in caplog.records if f"request {request_id}:" in r.getMessage()]
        assert [(r.levelno, r.exc_info is not None) for r in logged] == [(logging.ERROR, True)]
    assert "retry-after" not in usage.headers


async def test_the_group_commit_queue_is_bounded(
    runtime: Runtime, account: OpenedAccount, client: httpx.AsyncClient
) -> None:
    committer = GroupCommitter(runtime.db, runtime.engine, max_waiting=2)
    events = runtime.engine.prepare(
        account.organization,
        [UsageInput("tokens", 1, f"q{index}", None, {}) for index in range(3)],
    )
    answers = await asyncio.gather(
        *(committer.apply(account.organization, event) for event in events),
        return_exceptions=True,
    )
    assert [getattr(answer, "status", None) for answer in answers[:2]] == ["accepted"] * 2
    refused = answers[2]
    assert isinstance(refused, Overloaded)
    assert refused.retry_after_seconds == 1
    assert "retry in 1 s" in refused.message
    again = await committer.apply(account.organization, events[2])
    assert again.status == "accepted"
