"""The audit log: one entry per change, written with it (none when it rolls back), read by
owners and admins."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.accounts import invite_member
from core.audit import AuditEntry
from core.orgs import Role
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.support import graphql, member_key

pytestmark = pytest.mark.anyio

LOG = """query($first: Int, $after: String) {
  organization { auditLog(first: $first, after: $after) {
  nodes { id at action subject member { id email } apiKey { id prefix } before after }
  pageInfo { hasNextPage endCursor } } } }"""

CHANGES: list[tuple[str, str]] = [
    ("member.invited", 'inviteMember(email: "a@example.com") { __typename }'),
    (
        "api_key.created",
        'createApiKey(name: "ci", role: MEMBER) { __typename }',
    ),
    (
        "settings.updated",
        'updateOrganizationSettings(input: {legalName: "Acme SAS"}) { __typename }',
    ),
    (
        "plan.changed",
        'changePlan(planId: "scale", timing: NOW, idempotencyKey: "up") { __typename }',
    ),
    ("spend_cap.set", "setSpendCap(amountMinor: 10000) { __typename }"),
    (
        "plan.change_scheduled",
        'changePlan(planId: "starter", timing: PERIOD_END, idempotencyKey: "down") { __typename }',
    ),
    (
        "plan.change_canceled",
        'changePlan(planId: "scale", idempotencyKey: "back") { __typename }',
    ),
    (
        "topup.purchased",
        'purchaseTopUp(topUpId: "tokens-50m", idempotencyKey: "t1") { __typename }',
    ),
]


async def entries(runtime: Runtime, organization_id: str) -> int:
    async with runtime.db.read() as session:
        statement = select(func.count()).where(col(AuditEntry.organization_id) == organization_id)
        return int((await session.execute(statement)).scalar_one())


async def log(client: httpx.AsyncClient, key: str, **variables: Any) -> dict[str, Any]:
    body = await graphql(client, key, LOG, variables)
    assert "errors" not in body, body
    connection: dict[str, Any] = body["data"]["organization"]["auditLog"]
    return connection


async def test_each_change_leaves_exactly_one_entry_naming_who_and_which_key(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    key = account.owner_api_key
    organization_id = account.organization.id
    for action, mutation in CHANGES:
        before = await entries(runtime, organization_id)
        body = await graphql(client, key, f"mutation {{ {mutation} }}")
        assert "errors" not in body and "Error" not in str(body), body
        assert await entries(runtime, organization_id) == before + 1, action
        newest = (await log(client, key, first=1))["nodes"][0]
        assert newest["action"] == action
        assert newest["member"] == {"id": account.owner.id, "email": account.owner.email}
        assert key.startswith(newest["apiKey"]["prefix"])
        assert newest["at"] == runtime.clock.now().isoformat()
    actions = [node["action"] for node in (await log(client, key, first=20))["nodes"]]
    assert actions == [action for action, _ in reversed(CHANGES)]


async def test_member_and_key_changes_keep_before_and_after(
    client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    key = account.owner_api_key
    invited = await graphql(
        client,
        key,
        'mutation { inviteMember(email: "b@example.com", role: ADMIN) { ... on Member { id } } }',
    )
    member_id = invited["data"]["inviteMember"]["id"]
    changed = await graphql(
        client,
        key,
        f'mutation {{ changeMemberRole(memberId: "{member_id}", role: BILLING) {{ __typename }} }}',
    )
    assert changed["data"]["changeMemberRole"]["__typename"] == "MemberRoleChanged"
    newest = (await log(client, key, first=1))["nodes"][0]
    assert newest["action"] == "member.role_changed"
    assert newest["subject"] == member_id
    assert (newest["before"]["role"], newest["after"]["role"]) == ("admin", "billing")
    removed = await graphql(
        client, key, f'mutation {{ removeMember(memberId: "{member_id}") {{ __typename }} }}'
    )
    assert removed["data"]["removeMember"]["__typename"] == "MemberRemoved"
    newest = (await log(client, key, first=1))["nodes"][0]
    assert (newest["action"], newest["before"]["email"]) == ("member.removed", "b@example.com")
    assert newest["after"] == {"revoked_keys": []}


async def test_a_change_that_rolls_back_leaves_no_entry(
    runtime: Runtime, open_org: OpenOrg
) -> None:
    account = await open_org()
    with pytest.raises(RuntimeError):
        async with runtime.db.write() as session:
            await invite_member(
                session, runtime.engine, account.organization, email="c@example.com"
            )
            raise RuntimeError("the transaction fails after the change")
    assert await entries(runtime, account.organization.id) == 0


async def test_a_refused_change_leaves_no_entry(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    refused = await graphql(
        client,
        account.owner_api_key,
        f'mutation {{ removeMember(memberId: "{account.owner.id}") {{ __typename }} }}',
    )
    assert refused["data"]["removeMember"]["__typename"] == "InvalidInputError"
    assert await entries(runtime, account.organization.id) == 0


async def test_the_log_pages_newest_first(client: httpx.AsyncClient, open_org: OpenOrg) -> None:
    account = await open_org()
    key = account.owner_api_key
    for index in range(3):
        await graphql(
            client,
            key,
            f'mutation {{ inviteMember(email: "p{index}@example.com") {{ __typename }} }}',
        )
    first = await log(client, key, first=2)
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await log(client, key, first=2, after=first["pageInfo"]["endCursor"])
    assert rest["pageInfo"]["hasNextPage"] is False
    emails = [node["after"]["email"] for node in first["nodes"] + rest["nodes"]]
    assert emails == ["p2@example.com", "p1@example.com", "p0@example.com"]
    for first_count in (0, 101):
        body = await graphql(client, key, LOG, {"first": first_count})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("role", [Role.BILLING, Role.MEMBER])
async def test_the_log_is_for_owners_and_admins(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, role: Role
) -> None:
    account = await open_org()
    body = await graphql(client, await member_key(runtime, account, role), LOG)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin = await member_key(runtime, account, Role.ADMIN)
    nodes = (await log(client, admin))["nodes"]
    assert [(node["action"], node["member"], node["apiKey"]) for node in nodes] == [
        ("api_key.created", None, None)
    ] * 2, "keys minted by Tally itself (no request) have no actor"
