"""Tenancy and roles: nothing of another organization is visible, not even its existence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from billing.accounts import create_api_key
from core.clock import FrozenClock
from core.orgs import Role
from core.orgs import repository as orgs_repository
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql, member_key

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


CREATE_KEY = """
mutation($name: String!, $role: Role, $service: Boolean, $expiresAt: DateTime, $memberId: ID) {
  createApiKey(name: $name, role: $role, service: $service, expiresAt: $expiresAt,
               memberId: $memberId) {
    __typename
    ... on CreatedApiKey { secret apiKey { id role memberId expiresAt } }
    ... on Error { code message }
  }
}"""
INVITE = """mutation($email: String!, $role: Role) {
  inviteMember(email: $email, role: $role) { __typename ... on Member { id role } }
}"""
REMOVE = """mutation($id: ID!) {
  removeMember(memberId: $id) { __typename ... on Error { code message } }
}"""
CHANGE_ROLE = """mutation($id: ID!, $role: Role!) {
  changeMemberRole(memberId: $id, role: $role) {
    __typename
    ... on MemberRoleChanged { member { id role } }
    ... on Error { code message }
  }
}"""
KEYS = """{ organization { apiKeys { id name prefix role service memberId createdAt expiresAt
  lastUsedAt revokedAt } } }"""


async def mutate(client: httpx.AsyncClient, key: str, query: str, **variables: object) -> Any:
    body = await graphql(client, key, query, variables)
    assert "errors" not in body, body
    return next(iter(body["data"].values()))


async def member_with_key(
    client: httpx.AsyncClient, owner_key: str, email: str, role: str
) -> tuple[str, str]:
    """A new member with `role` and the secret of a key of theirs (minted by the owner)."""
    member = await mutate(client, owner_key, INVITE, email=email, role=role)
    created = await mutate(
        client, owner_key, CREATE_KEY, name=email, role=role, memberId=member["id"]
    )
    assert created["__typename"] == "CreatedApiKey", created
    return member["id"], created["secret"]


async def is_authenticated(client: httpx.AsyncClient, key: str) -> bool:
    body = await graphql(client, key, BY_ID)
    return "errors" not in body


async def test_a_key_takes_a_role_at_most_its_creators(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    admin_id, admin_key = await member_with_key(
        client, account.owner_api_key, "admin@example.com", "ADMIN"
    )
    refused = await mutate(client, admin_key, CREATE_KEY, name="mine", role="OWNER")
    assert refused["__typename"] == "InvalidInputError"
    assert refused["code"] == "ROLE_TOO_HIGH"
    assert "owner" in refused["message"] and "admin" in refused["message"]
    created = await mutate(client, admin_key, CREATE_KEY, name="mine", role="ADMIN")
    assert created["apiKey"]["role"] == "ADMIN"
    assert created["apiKey"]["memberId"] == admin_id
    service = await mutate(client, admin_key, CREATE_KEY, name="robot", service=True)
    assert service["apiKey"]["memberId"] is None
    promote = await mutate(client, admin_key, CHANGE_ROLE, id=admin_id, role="OWNER")
    assert promote["code"] == "ROLE_TOO_HIGH"
    owner_removal = await mutate(client, admin_key, REMOVE, id=account.owner.id)
    assert owner_removal["code"] == "ROLE_TOO_HIGH"


async def test_a_member_key_gets_at_most_its_members_role(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    member = await mutate(client, account.owner_api_key, INVITE, email="m@example.com")
    refused = await mutate(
        client, account.owner_api_key, CREATE_KEY, name="k", role="ADMIN", memberId=member["id"]
    )
    assert refused["code"] == "ROLE_TOO_HIGH"


async def test_removing_a_member_revokes_their_keys_and_only_theirs(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    owner_key = account.owner_api_key
    admin_id, admin_key = await member_with_key(client, owner_key, "a@example.com", "ADMIN")
    second = await mutate(client, admin_key, CREATE_KEY, name="second", role="MEMBER")
    other_id, other_key = await member_with_key(client, owner_key, "b@example.com", "ADMIN")
    assert await is_authenticated(client, admin_key)
    assert (await mutate(client, owner_key, REMOVE, id=admin_id))["__typename"] == "MemberRemoved"
    assert not await is_authenticated(client, admin_key)
    assert not await is_authenticated(client, second["secret"])
    assert await is_authenticated(client, other_key)
    assert await is_authenticated(client, owner_key)
    keys = (await graphql(client, owner_key, KEYS))["data"]["organization"]["apiKeys"]
    revoked = {key["name"] for key in keys if key["revokedAt"] is not None}
    assert revoked == {"a@example.com", "second"}
    assert other_id


async def test_the_last_owner_cannot_be_demoted_and_a_demotion_lowers_keys(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    owner_key = account.owner_api_key
    refused = await mutate(client, owner_key, CHANGE_ROLE, id=account.owner.id, role="ADMIN")
    assert refused["code"] == "LAST_OWNER"
    second_id, second_key = await member_with_key(client, owner_key, "o2@example.com", "OWNER")
    demoted = await mutate(client, second_key, CHANGE_ROLE, id=account.owner.id, role="MEMBER")
    assert demoted["member"]["role"] == "MEMBER"
    refused = await mutate(client, second_key, CHANGE_ROLE, id=second_id, role="ADMIN")
    assert refused["code"] == "LAST_OWNER"
    body = await graphql(client, owner_key, KEYS)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    keys = (await graphql(client, second_key, KEYS))["data"]["organization"]["apiKeys"]
    owner_keys = [key for key in keys if key["memberId"] == account.owner.id]
    assert [key["role"] for key in owner_keys] == ["MEMBER"]


async def test_a_key_expires(
    client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    account = await open_org()
    owner_key = account.owner_api_key
    past = (clock.now() - timedelta(seconds=1)).isoformat()
    refused = await mutate(client, owner_key, CREATE_KEY, name="old", role="ADMIN", expiresAt=past)
    assert refused == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "message": "expiresAt must be in the future",
    }
    soon = (clock.now() + timedelta(hours=1)).isoformat()
    created = await mutate(client, owner_key, CREATE_KEY, name="temp", role="ADMIN", expiresAt=soon)
    assert await is_authenticated(client, created["secret"])
    clock.advance(timedelta(hours=1))
    assert not await is_authenticated(client, created["secret"])
    assert await is_authenticated(client, owner_key)


async def test_api_keys_never_show_a_secret_and_record_their_last_use_once_a_minute(
    client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    account = await open_org()
    owner_key = account.owner_api_key
    started = clock.now()
    keys = (await graphql(client, owner_key, KEYS))["data"]["organization"]["apiKeys"]
    assert {key["name"] for key in keys} == {"owner key", "service key"}
    assert owner_key not in str(keys) and account.service_api_key not in str(keys)
    owner = next(key for key in keys if key["name"] == "owner key")
    assert owner["memberId"] == account.owner.id and owner["role"] == "OWNER"
    assert owner_key.startswith(owner["prefix"])

    async def last_used() -> dict[str, str | None]:
        body = await graphql(client, owner_key, KEYS)
        return {key["name"]: key["lastUsedAt"] for key in body["data"]["organization"]["apiKeys"]}

    assert await last_used() == {"owner key": started.isoformat(), "service key": None}
    clock.advance(timedelta(seconds=59))
    assert (await last_used())["owner key"] == started.isoformat()
    clock.advance(timedelta(seconds=1))
    assert (await last_used())["owner key"] == clock.now().isoformat()


@pytest.mark.parametrize("role", [Role.BILLING, Role.MEMBER])
async def test_api_keys_are_for_owners_and_admins(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, role: Role
) -> None:
    account = await open_org()
    secret = await member_key(runtime, account, role)
    body = await graphql(client, secret, KEYS)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
