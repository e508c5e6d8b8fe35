"""The schema file, the limits on queries, and what errors look like."""

from __future__ import annotations

from datetime import date

import httpx
import pytest
from graphql import get_introspection_query

from billing import repository as billing_repository
from billing.models import Invoice
from core.orgs import Organization
from core.orgs import repository as orgs_repository
from graph.schema import build_schema
from tally.cli import SCHEMA_FILE, builtin_registry, schema_text
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio


def test_schema_graphql_matches_the_exported_schema() -> None:
    exported = schema_text(builtin_registry())
    assert SCHEMA_FILE.read_text(encoding="utf-8") == exported, (
        "schema.graphql is stale: run `tally export-schema`"
    )


async def test_fixed_names_of_the_contract_are_in_the_schema(runtime: Runtime) -> None:
    text = build_schema(runtime.engine.registry).as_str()
    for fragment in (
        "scalar BigInt",
        "organization(id: ID = null): Organization",
        "plans: [Plan!]!",
        "resources: [ResourceDefinition!]!",
        "percentUsed: Float!",
        "tokens: ResourceUsage!",
        "limit: BigInt",
        "resetsOn: Date!",
    ):
        assert fragment in text, fragment
    invoices = build_schema(runtime.engine.registry)._schema.type_map["Organization"]
    field = invoices.fields["invoices"]  # type: ignore[attr-defined]
    assert str(field.type) == "InvoiceConnection!"
    assert {name: (str(arg.type), arg.default_value) for name, arg in field.args.items()} == {
        "first": ("Int", 10),
        "after": ("String", None),
    }


@pytest.mark.parametrize(
    "body",
    [
        {"query": "{ organization { "},
        {"query": "{ nope }"},
        {"query": 42},
        {"nothing": True},
    ],
)
async def test_malformed_graphql_is_an_error_never_a_500(
    client: httpx.AsyncClient, open_org: OpenOrg, body: object
) -> None:
    account = await open_org()
    response = await client.post(
        "/graphql", json=body, headers={"Authorization": f"Bearer {account.owner_api_key}"}
    )
    assert 200 <= response.status_code < 500
    assert response.status_code == 400 or response.json()["errors"]


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_graphiql_introspection_passes_the_depth_limit(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    body = await graphql(client, account.owner_api_key, get_introspection_query())
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_too_many_aliases_are_refused(client: httpx.AsyncClient, open_org: OpenOrg) -> None:
    account = await open_org()
    aliased = "{ " + " ".join(f"a{i}: organization {{ id }}" for i in range(40)) + " }"
    body = await graphql(client, account.owner_api_key, aliased)
    assert "aliases" in body["errors"][0]["message"]


async def test_a_query_nested_past_the_depth_limit_is_refused(runtime: Runtime) -> None:
    schema = build_schema(runtime.engine.registry, max_depth=2)
    shallow = await schema.execute("{ plans { priceMonthly { formatted } } }")  # depth 2
    assert shallow.errors is None or "exceeds maximum" not in str(shallow.errors)
    deep = await schema.execute("{ organization { plan { priceMonthly { formatted } } } }")
    assert deep.errors and "exceeds maximum operation depth of 2" in deep.errors[0].message


async def test_internal_errors_are_masked(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        organization = await orgs_repository.get_organization(session, account.organization.id)
        assert isinstance(organization, Organization)
        organization.plan_id = "retired-plan"
    body = await graphql(client, account.owner_api_key, "{ organization { plan { name } } }")
    assert body["errors"][0]["message"] == "Unexpected error."
    assert "retired-plan" not in str(body)


async def test_invoices_paginate_newest_first_with_cursors(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        await billing_repository.add(
            session,
            *(
                Invoice(
                    organization_id=account.organization.id,
                    number=f"TEST-{month:04d}",
                    issued_on=date(2026, month, 1),
                    total_minor=189000 * month,
                    currency="EUR",
                    status="paid",
                    created_at=runtime.clock.now(),
                )
                for month in range(1, 6)
            ),
        )
    query = """query($after: String) { organization { invoices(first: 2, after: $after) {
                 nodes { number date } pageInfo { hasNextPage endCursor } } } }"""
    seen: list[str] = []
    after = None
    while True:
        body = await graphql(client, account.owner_api_key, query, {"after": after})
        page = body["data"]["organization"]["invoices"]
        seen += [node["number"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"TEST-{month:04d}" for month in range(5, 0, -1)]
    bad = await graphql(client, account.owner_api_key, query, {"after": "%%%"})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
