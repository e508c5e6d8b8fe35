"""Operations: `/metrics` (one process, and two real workers adding up), JSON log lines with
the request id, links on TALLY_PUBLIC_URL, GraphiQL and introspection off, CORS, and the
security headers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.clock import FrozenClock
from core.config import DEFAULT_PUBLIC_URL, ConfigError, Settings
from tally.logging import JsonFormatter
from tally.runtime import Runtime
from tests.billing.stripe.support import WEBHOOK_SECRET, signed_event
from tests.billing.test_invoicing import APRIL_1, INVOICES, close
from tests.conftest import OpenOrg, create_postgres_database
from tests.support import graphql, tally_serve

pytestmark = pytest.mark.anyio

PUBLIC_URL = "https://billing.example.com"
FRONTEND = "https://app.example.com"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        public_url=PUBLIC_URL,
        cors_origins=(FRONTEND,),
        stripe_webhook_secret=WEBHOOK_SECRET,
        seller_name="Tally SAS",
        seller_address=("1 rue de Rivoli", "75001 Paris"),
        seller_vat_id="FR23334175221",
        seller_registration="RCS Paris 333 417 522",
    )


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with `labels` in a /metrics answer (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# Settings


def test_public_url_graphiql_and_cors_origins_are_read_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.public_url, default.graphiql, default.cors_origins) == (
        DEFAULT_PUBLIC_URL,
        True,
        (),
    )
    read = Settings.from_env(
        {
            "TALLY_PUBLIC_URL": "https://tally.example.com/",
            "TALLY_GRAPHIQL": "0",
            "TALLY_CORS_ORIGINS": "https://app.example.com, http://localhost:3000",
        }
    )
    assert read.public_url == "https://tally.example.com"
    assert read.graphiql is False
    assert read.cors_origins == ("https://app.example.com", "http://localhost:3000")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TALLY_PUBLIC_URL", "tally.example.com", "TALLY_PUBLIC_URL must be an http(s) address"),
        ("TALLY_PUBLIC_URL", "https://a.example.com?x=1", "TALLY_PUBLIC_URL must be"),
        ("TALLY_GRAPHIQL", "maybe", "TALLY_GRAPHIQL must be 1 or 0, not 'maybe'"),
        ("TALLY_CORS_ORIGINS", "https://a.example.com/path", "not 'https://a.example.com/path'"),
    ],
)
def test_malformed_settings_are_refused_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({name: value})


# Links on TALLY_PUBLIC_URL


async def test_invoice_links_are_on_the_public_url_never_the_host_header(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    clock.set(APRIL_1)
    await close(runtime, account.organization.id)
    response = await client.post(
        "/graphql",
        json={"query": INVOICES},
        headers={**bearer(account.owner_api_key), "Host": "evil.example.net"},
    )
    [node] = response.json()["data"]["organization"]["invoices"]["nodes"]
    for url in (node["pdfUrl"], node["hostedUrl"]):
        assert url.startswith(f"{PUBLIC_URL}/billing/invoices/"), url
        assert "evil" not in url
    parts = urlsplit(node["hostedUrl"])
    html = await client.get(f"{parts.path}?{parts.query}")
    assert html.status_code == 200
    assert "<style>" in html.text
    policy = html.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "'sha256-" in policy, "the invoice's own inline style is allowed by its hash"
    assert "'unsafe-inline'" not in policy
    assert html.headers["x-frame-options"] == "DENY"


# Security headers and CSP


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    answers = [
        await client.get("/healthz"),
        await client.post("/v1/usage", json={"events": []}),
        await client.post("/graphql", json={"query": "{ __typename }"}),
        await client.get("/nothing-here"),
    ]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
    assert [answer.status_code for answer in answers] == [200, 401, 200, 404]


async def test_the_page_has_one_strict_same_origin_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    [policy] = page.headers.get_list("content-security-policy")
    directives = dict(item.split(" ", 1) for item in policy.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy


async def test_graphiql_is_served_and_only_kept_out_of_frames(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"


# GraphiQL and introspection off


async def test_graphiql_and_introspection_can_be_turned_off(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    from tally.app import create_app

    closed = replace(runtime, settings=replace(runtime.settings, graphiql=False))
    account = await open_org()
    transport = httpx.ASGITransport(app=create_app(closed))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        introspection = await graphql(
            client, account.owner_api_key, "{ __schema { queryType { name } } }"
        )
        assert introspection.get("data") is None
        assert "introspection" in introspection["errors"][0]["message"].lower()
        ordinary = await graphql(client, account.owner_api_key, "{ organization { id } }")
        assert ordinary["data"]["organization"]["id"] == account.organization.id
        assert "errors" not in ordinary


# CORS


async def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    preflight = await client.options(
        "/graphql",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in preflight.headers
    answer = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Origin": FRONTEND}
    )
    assert answer.headers["access-control-allow-origin"] == FRONTEND
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-credentials" not in answer.headers


async def test_other_origins_get_no_cors_grant(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/graphql",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    answer = await client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"Origin": "https://evil.example.net"},
    )
    assert "access-control-allow-origin" not in answer.headers


async def test_no_origin_is_allowed_by_default_and_a_wildcard_never_with_credentials(
    runtime: Runtime,
) -> None:
    from tally.app import create_app

    for origins, expected in (((), None), (("*",), "*")):
        configured = replace(runtime, settings=replace(runtime.settings, cors_origins=origins))
        transport = httpx.ASGITransport(app=create_app(configured))
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as client:
            answer = await client.post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"Origin": FRONTEND, "Cookie": "session=1"},
            )
        assert answer.headers.get("access-control-allow-origin") == expected
        assert "access-control-allow-credentials" not in answer.headers


# Metrics and logs, one process


async def test_metrics_count_requests_by_route_decisions_groups_pool_and_webhooks(
    client: httpx.AsyncClient, clock: FrozenClock, open_org: OpenOrg
) -> None:
    account = await open_org()
    before = (await client.get("/metrics")).text
    route = {"method": "POST", "route": "/v1/usage", "status": "200"}
    for index in range(3):
        event = {"resource": "tokens", "amount": 10, "idempotency_key": f"ops-{index}"}
        answer = await client.post(
            "/v1/usage", json={"events": [event]}, headers=bearer(account.owner_api_key)
        )
        assert answer.status_code == 200, answer.text
    missing = await client.get("/billing/invoices/inv_nothing/pdf")
    assert missing.status_code >= 400
    unsigned = await client.post("/webhooks/stripe", content=b"{}")
    assert unsigned.status_code == 400
    at = int(clock.now().timestamp())
    payload, headers = signed_event("evt_ops_ignored", "charge.succeeded", {"id": "ch_1"}, at, at)
    ignored = await client.post("/webhooks/stripe", content=payload, headers=headers)
    assert ignored.json()["outcome"] == "ignored"
    after = await client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def grew(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert grew("tally_http_requests_total", **route) == 3
    assert grew("tally_http_request_duration_seconds_count", method="POST", route="/v1/usage") == 3
    template = "/billing/invoices/{invoice_id}/{format}"
    assert grew("tally_http_requests_total", route=template, status=str(missing.status_code)) == 1
    assert "inv_nothing" not in text, "routes are counted by template, never by raw path"
    assert grew("tally_usage_decisions_total", status="accepted", resource="tokens") == 3
    assert grew("tally_group_commit_size_count") == 3
    assert grew("tally_group_commit_size_sum") == 3
    assert grew("tally_webhook_events_total", outcome="invalid_signature") == 1
    assert grew("tally_webhook_events_total", outcome="ignored") == 1
    assert "tally_db_connections_checked_out" in text
    assert sample(text, "tally_db_connections_checked_out", engine="write") == 0


async def test_log_lines_are_json_with_the_echoed_request_id(client: httpx.AsyncClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("tally.access")
    access.addHandler(handler)
    previous = access.level
    access.setLevel(logging.INFO)
    try:
        given = await client.get("/healthz", headers={"X-Request-Id": "ops-trace-1"})
        minted = await client.get("/nothing-here")
    finally:
        access.removeHandler(handler)
        access.setLevel(previous)
    assert given.headers["x-request-id"] == "ops-trace-1"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["ops-trace-1", minted.headers["x-request-id"]]
    first = lines[0]
    assert (first["level"], first["logger"], first["method"], first["route"]) == (
        "info",
        "tally.access",
        "GET",
        "/healthz",
    )
    assert first["status"] == 200 and first["pid"] == os.getpid()
    assert lines[1]["route"] == "unmatched" and lines[1]["status"] == 404


def test_a_failure_is_one_json_line_with_its_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("tally").makeRecord(
            "tally", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "failed x" and "RuntimeError: boom" in line["exception"]


# Two real workers


PLANS = """
[plans.metered]
name = "Metered"
price_monthly = "10.00"
currency = "EUR"
[plans.metered.limits]
tokens = 1000000
"""


@pytest.fixture
def two_workers(postgres_admin_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    url, drop = create_postgres_database(postgres_admin_url)
    plans = tmp_path / "plans.toml"
    plans.write_text(PLANS)
    env = {**os.environ, "TALLY_DATABASE_URL": url, "TALLY_PLANS": str(plans)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("TALLY_PUBLIC_URL", None)
    created = subprocess.run(
        [sys.executable, "-m", "tally.cli", "create-org", "--name", "Ops", "--plan", "metered"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    key = json.loads(created.stdout)["service_api_key"]
    log_path = tmp_path / "server.log"
    try:
        with tally_serve(env, log_path, workers=2, seconds=60) as served:
            yield served.base, key, log_path
    finally:
        drop()


async def test_metrics_of_two_workers_add_up(two_workers: tuple[str, str, Path]) -> None:
    base, key, log_path = two_workers
    total = 200
    keys: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        keys.put_nowait(index)
    request_ids: list[str] = []

    async def client() -> None:
        while not keys.empty():
            index = keys.get_nowait()
            event = {"resource": "tokens", "amount": 1, "idempotency_key": f"w-{index}"}
            # a new connection each time, so both workers take some
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                answer = await http.post("/v1/usage", json={"events": [event]}, headers=bearer(key))
            assert answer.status_code == 200, answer.text
            assert answer.json()["results"][0]["status"] == "accepted"
            request_ids.append(answer.headers["x-request-id"])

    await asyncio.gather(*(client() for _ in range(16)))
    scrapes = []
    for _ in range(6):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            scrapes.append((await http.get("/metrics")).text)
    route = {"method": "POST", "route": "/v1/usage", "status": "200"}
    for text in scrapes:
        assert sample(text, "tally_http_requests_total", **route) == total
        assert sample(text, "tally_usage_decisions_total", status="accepted") == total
        assert sample(text, "tally_group_commit_size_sum") == total
    await asyncio.sleep(0.5)
    lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [json.loads(line) for line in lines]
    usage = [line for line in access if line.get("route") == "/v1/usage"]
    assert sorted(line["request_id"] for line in usage) == sorted(request_ids)
    assert len({line["pid"] for line in usage}) == 2, "both workers answered some requests"
