"""Bounded work per GraphQL request, and bad input answered clearly, the same way however it
is written (inline or in the variables)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from billing.accounts import OpenedAccount
from graph.cost import MAX_COST
from limits.stats import MAX_BUCKETS, MAX_RANGE
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

STATS = """query($from: DateTime!, $to: DateTime!, $g: Granularity, $tz: String) {
  organization { usageStats(from: $from, to: $to, granularity: $g, timezone: $tz) {
    from to totalTokens tokensOverTime { start } } } }"""

CONSUME_INLINE = """mutation { consumeUsage(resource: "tokens", amount: %s, idempotencyKey: "k1") {
  __typename } }"""
CONSUME = """mutation($amount: BigInt!, $key: String!) {
  consumeUsage(resource: "tokens", amount: $amount, idempotencyKey: $key) {
    __typename ... on Error { code message } } }"""


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org()


def on_organization(selection: str) -> str:
    """A query of `selection` on the caller's organization."""
    return "{ organization { " + selection + " } }"


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    errors = body.get("errors")
    assert isinstance(errors, list) and len(errors) == 1, body
    error = errors[0]
    assert isinstance(error, dict)
    return error


async def test_a_ten_thousand_year_range_by_hour_is_refused_at_once(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    started = time.monotonic()
    body = await graphql(
        client,
        account.owner_api_key,
        STATS,
        {"from": "2000-01-01T00:00:00Z", "to": "8999-01-01T00:00:00Z", "g": "HOUR"},
    )
    assert time.monotonic() - started < 2
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "to"}, error
    assert body["data"] == {"organization": {"usageStats": None}}
    assert f"longest range of {MAX_RANGE.days} days" in str(error["message"])


async def test_too_many_buckets_are_refused_naming_the_limit(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    body = await graphql(
        client,
        account.owner_api_key,
        STATS,
        {"from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "g": "HOUR"},
    )
    error = only_error(body)
    assert f"over the limit of {MAX_BUCKETS} buckets" in str(error["message"]), error
    by_day = await graphql(
        client,
        account.owner_api_key,
        STATS,
        {"from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "g": "DAY"},
    )
    assert len(by_day["data"]["organization"]["usageStats"]["tokensOverTime"]) == 334


async def test_a_date_alone_is_the_start_of_that_day_in_the_requested_zone(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    body = await graphql(
        client,
        account.owner_api_key,
        STATS,
        {"from": "2026-11-28", "to": "2026-11-29", "tz": "Europe/Paris"},
    )
    stats = body["data"]["organization"]["usageStats"]
    assert (stats["from"], stats["to"]) == (
        "2026-11-27T23:00:00+00:00",
        "2026-11-28T23:00:00+00:00",
    )
    assert [point["start"] for point in stats["tokensOverTime"]] == ["2026-11-28T00:00:00+01:00"]


@pytest.mark.parametrize("first", [0, 101, 1_000_000, -1])
async def test_a_page_out_of_bounds_is_refused_whole_naming_the_bounds(
    client: httpx.AsyncClient, account: OpenedAccount, first: int
) -> None:
    inline = await graphql(
        client,
        account.owner_api_key,
        f"{{ organization {{ name invoices(first: {first}) {{ nodes {{ number }} }} }} }}",
    )
    variable = await graphql(
        client,
        account.owner_api_key,
        "query($n: Int) { organization { name invoices(first: $n) { nodes { number } } } }",
        {"n": first},
    )
    for body in (inline, variable):
        assert body["data"] is None, body
        error = only_error(body)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
        assert error["message"] == f"Organization.invoices(first:) must be 1 to 100, not {first}"
    fine = await graphql(
        client, account.owner_api_key, "{ organization { invoices(first: 100) { nodes { id } } } }"
    )
    assert fine == {"data": {"organization": {"invoices": {"nodes": []}}}}


async def test_an_expensive_query_is_refused_with_its_cost(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    field = 'usageStats(from: "2026-01-01", to: "2026-01-02") { totalTokens }'
    eleven = " ".join(f"s{index}: {field}" for index in range(11))
    body = await graphql(client, account.owner_api_key, on_organization(eleven))
    error = only_error(body)
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert error["extensions"]["cost"] > MAX_COST
    assert f"over the limit of {MAX_COST}" in str(error["message"])
    many = " ".join(f"s{index}: {field}" for index in range(40))
    aliases = await graphql(client, account.owner_api_key, on_organization(many))
    assert "aliases" in str(only_error(aliases)["message"])
    two = " ".join(f"s{index}: {field}" for index in range(2))
    fine = await graphql(client, account.owner_api_key, on_organization(two))
    assert fine["data"]["organization"]["s1"] == {"totalTokens": 0}


async def test_a_huge_document_is_refused_by_its_tokens(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    names = " ".join(["name"] * 3000)
    body = await graphql(client, account.owner_api_key, on_organization(names))
    assert "token" in str(only_error(body)["message"]).lower()


@pytest.mark.parametrize(
    ("inline", "variable", "shown"),
    [('"abc"', "abc", '"abc"'), ("10.5", 10.5, "10.5"), ('"100"', "100", '"100"')],
)
async def test_a_bad_bigint_says_the_same_inline_or_in_a_variable(
    client: httpx.AsyncClient,
    account: OpenedAccount,
    inline: str,
    variable: object,
    shown: str,
) -> None:
    expected = f"BigInt needs an integer written as a number (e.g. 1200), not {shown}"
    written = await graphql(client, account.service_api_key, CONSUME_INLINE % inline)
    assert written["data"] is None
    assert expected in str(only_error(written)["message"]), written
    passed = await graphql(
        client, account.service_api_key, CONSUME, {"amount": variable, "key": "k2"}
    )
    assert passed["data"] is None
    assert str(only_error(passed)["message"]) == f"Variable '$amount' has invalid value: {expected}"


@pytest.mark.parametrize("text", ["nul\x00here", "lone \ud800 surrogate"])
async def test_unacceptable_text_is_refused_naming_where_it_is(
    client: httpx.AsyncClient, account: OpenedAccount, text: str
) -> None:
    request = {"query": CONSUME, "variables": {"amount": 1, "key": text}}
    response = await client.post(
        "/graphql",
        content=json.dumps(request),
        headers={
            "Authorization": f"Bearer {account.service_api_key}",
            "Content-Type": "application/json",
        },
    )
    passed = response.json()
    error = only_error(passed)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "key"}, error
    assert str(error["message"]).startswith("variable $key contains")
    escaped = text.encode("ascii", "backslashreplace").decode().replace("\\x00", "\\u0000")
    inline = (
        'mutation { consumeUsage(resource: "tokens", amount: 1, idempotencyKey: "'
        + escaped
        + '") { __typename } }'
    )
    written = await graphql(client, account.service_api_key, inline)
    error = only_error(written)
    if "\ud800" in text:  # the parser itself refuses a lone surrogate's escape
        assert "Invalid Unicode escape sequence: '\\ud800'" in str(error["message"]), error
        return
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "idempotencyKey"}, error
    assert "Mutation.consumeUsage(idempotencyKey:) contains" in str(error["message"])


async def test_client_errors_are_logged_as_one_line(
    client: httpx.AsyncClient, account: OpenedAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graph.errors")
    await graphql(client, None, "{ organization { name } }")
    await graphql(client, account.service_api_key, "{ organization { name } }")
    await graphql(client, account.service_api_key, CONSUME_INLINE % '"abc"')
    records = [record for record in caplog.records if record.name == "graph.errors"]
    codes = ["UNAUTHENTICATED", "FORBIDDEN", "GRAPHQL_VALIDATION_FAILED"]
    assert [(record.levelname, record.exc_info) for record in records] == [("INFO", None)] * 3
    for record, code in zip(records, codes, strict=True):
        assert code in record.getMessage()
        assert "\n" not in record.getMessage()
