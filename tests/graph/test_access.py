"""Tenancy and roles: nothing of another organization is visible, not even its existence."""

from __future__ import annotations

import httpx
import pytest

from billing.accounts import create_api_key
from core.orgs import Role
from core.orgs import repository as orgs_repository
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

BY_ID = "query($id: ID) { organization(id: $id) { id name usage { percentUsed } } }"


async def test_another_organization_looks_exactly_like_a_missing_one(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    mine = await open_org(name="A")
    theirs = await open_org(name="B")
    other = await graphql(client, mine.owner_api_key, BY_ID, {"id": theirs.organization.id})
    missing = await graphql(client, mine.owner_api_key, BY_ID, {"id": "0" * 32})
    assert other == missing == {"data": {"organization": None}}
    own = await graphql(client, mine.owner_api_key, BY_ID, {"id": mine.organization.id})
    assert own["data"]["organization"]["name"] == "A"


@pytest.mark.parametrize("role", list(Role))
async def test_every_member_role_reads_the_page(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, role: Role
) -> None:
    account = await open_org()
    async with runtime.db.write() as session:
        _, secret = await create_api_key(
            session, runtime.engine, account.organization, name=role.value, role=role
        )
    body = await graphql(client, secret, BY_ID)
    assert body["data"]["organization"]["id"] == account.organization.id


async def test_a_service_key_cannot_read_the_page(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    body = await graphql(client, account.service_api_key, BY_ID)
    assert body["data"] == {"organization": None}
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("key", [None, "tally_not-a-real-key", "garbage", ""])
async def test_no_key_or_an_unknown_key_is_unauthenticated(
    client: httpx.AsyncClient, key: str | None
) -> None:
    for query in (BY_ID, "{ plans { id } }", "{ resources { key } }"):
        body = await graphql(client, key, query)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body


async def test_a_revoked_key_is_unauthenticated(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    assert (await graphql(client, account.owner_api_key, BY_ID))["data"]["organization"]
    async with runtime.db.write() as session:
        await orgs_repository.revoke_api_keys(
            session, account.organization.id, ["owner key"], runtime.clock.now()
        )
    body = await graphql(client, account.owner_api_key, BY_ID)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_non_bearer_scheme_is_unauthenticated(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    response = await client.post(
        "/graphql", json={"query": BY_ID}, headers={"Authorization": account.owner_api_key}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
