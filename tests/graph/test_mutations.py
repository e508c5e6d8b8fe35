"""GraphQL mutations: usage, reservations, members and API keys, with typed errors and roles."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from billing.accounts import OpenedAccount, create_api_key, invite_member
from core.clock import FrozenClock
from core.orgs import Role
from tally.runtime import Runtime
from tests.conftest import START, OpenOrg
from tests.support import SMALL_PLANS, graphql

pytestmark = pytest.mark.anyio


CONSUME = """
mutation Consume($org: ID, $resource: String!, $amount: BigInt!, $key: String!,
                 $attributes: JSON) {
  consumeUsage(organizationId: $org, resource: $resource, amount: $amount,
               idempotencyKey: $key, attributes: $attributes) {
    __typename
    ... on UsageDecision { resource status requested used limit remaining idempotencyKey }
    ... on LimitExceededError { code message resource used limit requested }
    ... on InvalidInputError { code message field }
    ... on NotFoundError { code message }
    ... on ReservationStateError { code message reservationId }
  }
}
"""

RESERVE = """
mutation Reserve($org: ID, $amount: BigInt!, $ttl: Int, $key: String!) {
  reserveUsage(organizationId: $org, resource: "tokens", amount: $amount, ttlSeconds: $ttl,
               idempotencyKey: $key) {
    __typename
    ... on Reservation { id resource amount status expiresAt idempotencyKey }
    ... on LimitExceededError { code message resource used limit requested }
    ... on InvalidInputError { code message field }
    ... on NotFoundError { code message }
  }
}
"""

COMMIT = """
mutation Commit($id: ID!, $amount: BigInt!, $attributes: JSON) {
  commitReservation(reservationId: $id, amount: $amount, attributes: $attributes) {
    __typename
    ... on UsageDecision { resource status requested used limit remaining idempotencyKey }
    ... on LimitExceededError { code resource used limit requested }
    ... on InvalidInputError { code message field }
    ... on NotFoundError { code message }
    ... on ReservationStateError { code reservationId }
  }
}
"""

RELEASE = """
mutation Release($id: ID!) {
  releaseReservation(reservationId: $id) {
    __typename
    ... on Reservation { id resource amount status expiresAt idempotencyKey }
    ... on NotFoundError { code message }
    ... on ReservationStateError { code reservationId }
  }
}
"""

INVITE = """
mutation Invite($org: ID, $email: String!, $role: Role) {
  inviteMember(organizationId: $org, email: $email, role: $role) {
    __typename
    ... on Member { id email role status }
    ... on LimitExceededError { code resource used limit requested }
    ... on InvalidInputError { code message field }
    ... on NotFoundError { code message }
  }
}
"""

REMOVE = """
mutation Remove($id: ID!) {
  removeMember(memberId: $id) {
    __typename
    ... on MemberRemoved { member { id email role } }
    ... on InvalidInputError { code message field }
    ... on NotFoundError { code message }
  }
}
"""

CREATE_KEY = """
mutation CreateKey($name: String!, $role: Role, $service: Boolean) {
  createApiKey(name: $name, role: $role, service: $service) {
    __typename
    ... on CreatedApiKey { secret apiKey { id name role service prefix revokedAt } }
    ... on InvalidInputError { code message field }
  }
}
"""

REVOKE_KEY = """
mutation RevokeKey($id: ID!) {
  revokeApiKey(apiKeyId: $id) {
    __typename
    ... on ApiKeyRevoked { apiKey { id revokedAt } }
    ... on NotFoundError { code message }
  }
}
"""

PAGE = """
query Page {
  organization {
    id
    usage { tokens { used remaining } agents { used } seats { used limit remaining } }
    members { id email role }
  }
}
"""


@pytest.fixture
def plans() -> str:
    return SMALL_PLANS


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org(plan="small", name="A")


async def member_key(runtime: Runtime, account: OpenedAccount, role: Role) -> str:
    async with runtime.db.write() as session:
        _, secret = await create_api_key(
            session, runtime.engine, account.organization, name=role.value, role=role
        )
    return secret


async def page(client: httpx.AsyncClient, account: OpenedAccount) -> dict[str, Any]:
    body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    organization: dict[str, Any] = body["data"]["organization"]
    return organization


async def consume(
    client: httpx.AsyncClient,
    key: str,
    amount: int,
    idempotency_key: str,
    resource: str = "tokens",
    **variables: Any,
) -> dict[str, Any]:
    return await graphql(
        client,
        key,
        CONSUME,
        {"resource": resource, "amount": amount, "key": idempotency_key, **variables},
    )


def decision(
    status: str, requested: int, used: int, key: str, limit: int = 1000, resource: str = "tokens"
) -> dict[str, Any]:
    return {
        "__typename": "UsageDecision",
        "resource": resource,
        "status": status,
        "requested": requested,
        "used": used,
        "limit": limit,
        "remaining": limit - used,
        "idempotencyKey": key,
    }


def forbidden(body: dict[str, Any], field: str) -> None:
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == [field]


# --- consumeUsage ----------------------------------------------------------------------------


async def test_consume_usage_is_accepted_then_duplicate_on_replay(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    attributes = {"model": "gpt-4o", "action": "chat_reply"}
    first = await consume(client, account.service_api_key, 300, "k-1", attributes=attributes)
    assert first == {"data": {"consumeUsage": decision("ACCEPTED", 300, 300, "k-1")}}

    replay = await consume(client, account.service_api_key, 300, "k-1", attributes=attributes)
    assert replay == {"data": {"consumeUsage": decision("DUPLICATE", 300, 300, "k-1")}}
    assert (await page(client, account))["usage"]["tokens"] == {"used": 300, "remaining": 700}


async def test_consume_usage_over_a_hard_limit_is_a_limit_exceeded_error(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await consume(client, account.service_api_key, 900, "first")
    refused = await consume(client, account.service_api_key, 101, "second")
    assert refused == {
        "data": {
            "consumeUsage": {
                "__typename": "LimitExceededError",
                "code": "LIMIT_EXCEEDED",
                "message": "tokens: 101 more would pass the limit of 1000 (900 used)",
                "resource": "tokens",
                "used": 900,
                "limit": 1000,
                "requested": 101,
            }
        }
    }
    assert (await page(client, account))["usage"]["tokens"] == {"used": 900, "remaining": 100}
    exact = await consume(client, account.service_api_key, 100, "second")
    assert exact == {"data": {"consumeUsage": decision("ACCEPTED", 100, 1000, "second")}}


async def test_a_gauge_is_taken_and_given_back_through_consume_usage(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    taken = await consume(client, key, 2, "agents-up", "agents", attributes={"agent_id": "a"})
    assert taken["data"]["consumeUsage"] == decision("ACCEPTED", 2, 2, "agents-up", 2, "agents")
    back = await consume(client, key, -1, "agents-down", "agents")
    assert back["data"]["consumeUsage"] == decision("ACCEPTED", -1, 1, "agents-down", 2, "agents")
    assert (await page(client, account))["usage"]["agents"] == {"used": 1}


@pytest.mark.parametrize(
    ("resource", "amount", "attributes", "code", "message"),
    [
        (
            "tokens",
            -5,
            None,
            "INVALID_AMOUNT",
            "tokens is metered: its amount cannot be negative (-5)",
        ),
        (
            "voice",
            1,
            None,
            "UNKNOWN_RESOURCE",
            "unknown resource 'voice'; known: tokens, documents, agents, seats",
        ),
        (
            "tokens",
            1,
            {"colour": "red"},
            "INVALID_ATTRIBUTE",
            "tokens does not take attribute(s) colour; "
            "it takes: model, action, agent_id, input_tokens, output_tokens",
        ),
        ("tokens", 1, [1, 2], "INVALID_ATTRIBUTE", "attributes must be a JSON object"),
    ],
)
async def test_bad_usage_is_an_invalid_input_error(
    client: httpx.AsyncClient,
    account: OpenedAccount,
    resource: str,
    amount: int,
    attributes: Any,
    code: str,
    message: str,
) -> None:
    body = await consume(
        client, account.service_api_key, amount, "bad", resource, attributes=attributes
    )
    answer = body["data"]["consumeUsage"]
    assert (answer["__typename"], answer["code"], answer["message"]) == (
        "InvalidInputError",
        code,
        message,
    )
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}


async def test_a_non_integer_amount_is_refused_by_the_schema(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    for amount in (1.5, True, "many"):
        body = await consume(client, account.service_api_key, amount, f"bad-{amount}")  # type: ignore[arg-type]
        assert body["data"] is None
        assert "BigInt" in body["errors"][0]["message"], body
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}


async def test_another_organization_answers_exactly_like_a_missing_one(
    client: httpx.AsyncClient, account: OpenedAccount, open_org: OpenOrg
) -> None:
    other = await open_org(plan="small", name="B")
    for key in (account.service_api_key, account.owner_api_key):
        theirs = await consume(client, key, 10, "x", org=other.organization.id)
        missing = await consume(client, key, 10, "x", org="0" * 32)
        assert theirs == missing
        assert theirs == {
            "data": {
                "consumeUsage": {
                    "__typename": "NotFoundError",
                    "code": "NOT_FOUND",
                    "message": "no such organization",
                }
            }
        }
        reserved = await graphql(
            client, key, RESERVE, {"org": other.organization.id, "amount": 10, "key": "x"}
        )
        assert reserved == await graphql(
            client, key, RESERVE, {"org": "0" * 32, "amount": 10, "key": "x"}
        )
        assert reserved["data"]["reserveUsage"]["__typename"] == "NotFoundError"
    assert (await page(client, other))["usage"]["tokens"] == {"used": 0, "remaining": 1000}
    own = await consume(client, account.service_api_key, 10, "x", org=account.organization.id)
    assert own == {"data": {"consumeUsage": decision("ACCEPTED", 10, 10, "x")}}


# --- reservations ----------------------------------------------------------------------------


async def reserve(
    client: httpx.AsyncClient, key: str, amount: int, idempotency_key: str, ttl: int = 120
) -> dict[str, Any]:
    body = await graphql(
        client, key, RESERVE, {"amount": amount, "key": idempotency_key, "ttl": ttl}
    )
    answer: dict[str, Any] = body["data"]["reserveUsage"]
    return answer


async def commit(client: httpx.AsyncClient, key: str, reservation_id: str, amount: int) -> Any:
    body = await graphql(client, key, COMMIT, {"id": reservation_id, "amount": amount})
    return body["data"]["commitReservation"]


async def release(client: httpx.AsyncClient, key: str, reservation_id: str) -> Any:
    return (await graphql(client, key, RELEASE, {"id": reservation_id}))["data"][
        "releaseReservation"
    ]


async def test_reserve_commit_round_trip(client: httpx.AsyncClient, account: OpenedAccount) -> None:
    key = account.service_api_key
    held = await reserve(client, key, 600, "job-1")
    reservation_id = held.pop("id")
    assert held == {
        "__typename": "Reservation",
        "resource": "tokens",
        "amount": 600,
        "status": "held",
        "expiresAt": (START + timedelta(seconds=120)).isoformat(),
        "idempotencyKey": "job-1",
    }
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 400}

    refused = await consume(client, key, 401, "too-big")
    assert refused["data"]["consumeUsage"]["__typename"] == "LimitExceededError"
    assert (refused["data"]["consumeUsage"]["used"], refused["data"]["consumeUsage"]["limit"]) == (
        0,
        1000,
    )

    assert await commit(client, key, reservation_id, 250) == decision("ACCEPTED", 250, 250, "job-1")
    assert (await page(client, account))["usage"]["tokens"] == {"used": 250, "remaining": 750}
    assert await commit(client, key, reservation_id, 250) == decision(
        "DUPLICATE", 250, 250, "job-1"
    )
    assert (await page(client, account))["usage"]["tokens"] == {"used": 250, "remaining": 750}
    assert await release(client, key, reservation_id) == {
        "__typename": "ReservationStateError",
        "code": "ALREADY_COMMITTED",
        "reservationId": reservation_id,
    }

    again = await reserve(client, key, 600, "job-1")
    assert again["id"] == reservation_id


async def test_reserve_release_round_trip(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    held = await reserve(client, key, 900, "job-2")
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 100}

    released = await release(client, key, held["id"])
    assert released == {**held, "status": "released"}
    assert await release(client, key, held["id"]) == {**held, "status": "released"}
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}

    late = await commit(client, key, held["id"], 10)
    assert late["__typename"] == "ReservationStateError"
    assert late["reservationId"] == held["id"]
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}


async def test_a_reservation_that_does_not_fit_is_a_limit_exceeded_error(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    await consume(client, account.service_api_key, 700, "used")
    assert await reserve(client, account.service_api_key, 301, "big") == {
        "__typename": "LimitExceededError",
        "code": "LIMIT_EXCEEDED",
        "message": "tokens: 301 more would pass the limit of 1000 (700 used)",
        "resource": "tokens",
        "used": 700,
        "limit": 1000,
        "requested": 301,
    }
    invalid = await reserve(client, account.service_api_key, 10, "zero-ttl", ttl=0)
    assert (invalid["__typename"], invalid["code"]) == ("InvalidInputError", "INVALID_TTL")


async def test_an_expired_reservation_cannot_be_committed_and_frees_its_room(
    client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    key = account.service_api_key
    held = await reserve(client, key, 800, "job-3", ttl=30)
    clock.advance(timedelta(seconds=30))
    assert await commit(client, key, held["id"], 800) == {
        "__typename": "ReservationStateError",
        "code": "RESERVATION_EXPIRED",
        "reservationId": held["id"],
    }
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}
    full = await consume(client, key, 1000, "everything")
    assert full["data"]["consumeUsage"] == decision("ACCEPTED", 1000, 1000, "everything")


async def test_an_unknown_or_foreign_reservation_is_not_found(
    client: httpx.AsyncClient, account: OpenedAccount, open_org: OpenOrg
) -> None:
    other = await open_org(plan="small", name="B")
    theirs = await reserve(client, other.service_api_key, 500, "theirs")
    for reservation_id in ("0" * 32, theirs["id"]):
        not_found = {
            "__typename": "NotFoundError",
            "code": "NOT_FOUND",
            "message": f"no reservation {reservation_id!r}",
        }
        assert await commit(client, account.service_api_key, reservation_id, 1) == not_found
        assert await release(client, account.service_api_key, reservation_id) == not_found
    assert (await page(client, other))["usage"]["tokens"] == {"used": 0, "remaining": 500}


# --- members and seats -----------------------------------------------------------------------


async def invite(
    client: httpx.AsyncClient, key: str, email: str, role: str | None = None
) -> dict[str, Any]:
    variables: dict[str, Any] = {"email": email}
    if role is not None:
        variables["role"] = role
    body = await graphql(client, key, INVITE, variables)
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["inviteMember"]
    return answer


async def seats(client: httpx.AsyncClient, account: OpenedAccount) -> int:
    used: int = (await page(client, account))["usage"]["seats"]["used"]
    return used


async def test_invite_takes_a_seat_and_remove_gives_it_back(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.owner_api_key
    assert await seats(client, account) == 1
    invited = await invite(client, key, "ada@example.com")
    member_id = invited.pop("id")
    assert invited == {
        "__typename": "Member",
        "email": "ada@example.com",
        "role": "MEMBER",
        "status": "invited",
    }
    assert await seats(client, account) == 2

    for email in ("ada@example.com", "ADA@example.com"):
        assert await invite(client, key, email) == {
            "__typename": "InvalidInputError",
            "code": "INVALID_INPUT",
            "message": f"{email} is already a member",
            "field": "email",
        }
    not_an_email = await invite(client, key, "not-an-email")
    assert (not_an_email["__typename"], not_an_email["field"]) == ("InvalidInputError", "email")
    assert await seats(client, account) == 2

    removed = await graphql(client, key, REMOVE, {"id": member_id})
    assert removed == {
        "data": {
            "removeMember": {
                "__typename": "MemberRemoved",
                "member": {"id": member_id, "email": "ada@example.com", "role": "MEMBER"},
            }
        }
    }
    assert await seats(client, account) == 1
    assert [m["email"] for m in (await page(client, account))["members"]] == [account.owner.email]

    twice = await graphql(client, key, REMOVE, {"id": member_id})
    assert twice == {
        "data": {
            "removeMember": {
                "__typename": "NotFoundError",
                "code": "NOT_FOUND",
                "message": "no such member",
            }
        }
    }
    assert await seats(client, account) == 1


async def test_the_last_owner_cannot_be_removed(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.owner_api_key
    refused = await graphql(client, key, REMOVE, {"id": account.owner.id})
    assert refused == {
        "data": {
            "removeMember": {
                "__typename": "InvalidInputError",
                "code": "LAST_OWNER",
                "message": "the last owner cannot be removed; make another member owner first",
                "field": "memberId",
            }
        }
    }
    assert await seats(client, account) == 1
    assert [m["id"] for m in (await page(client, account))["members"]] == [account.owner.id]

    second = await invite(client, key, "second-owner@example.com", "OWNER")
    assert (second["__typename"], second["role"]) == ("Member", "OWNER")
    assert await seats(client, account) == 2
    removed = await graphql(client, key, REMOVE, {"id": account.owner.id})
    assert removed["data"]["removeMember"]["__typename"] == "MemberRemoved"
    gone = await graphql(client, key, "{ organization { id } }")
    assert gone["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_two_concurrent_invites_for_the_last_seat_yield_one_member(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.owner_api_key
    assert (await invite(client, key, "second@example.com"))["__typename"] == "Member"
    answers = await asyncio.gather(
        invite(client, key, "third@example.com"), invite(client, key, "fourth@example.com")
    )
    kinds = sorted(answer["__typename"] for answer in answers)
    assert kinds == ["LimitExceededError", "Member"]
    [refused] = [a for a in answers if a["__typename"] == "LimitExceededError"]
    assert refused == {
        "__typename": "LimitExceededError",
        "code": "LIMIT_EXCEEDED",
        "resource": "seats",
        "used": 3,
        "limit": 3,
        "requested": 1,
    }
    [joined] = [a for a in answers if a["__typename"] == "Member"]
    organization = await page(client, account)
    assert organization["usage"]["seats"] == {"used": 3, "limit": 3, "remaining": 0}
    assert sorted(m["email"] for m in organization["members"]) == sorted(
        [account.owner.email, "second@example.com", joined["email"]]
    )


async def test_an_invite_racing_one_for_the_same_email_in_another_case_is_refused(
    request: pytest.FixtureRequest,
    runtime: Runtime,
    client: httpx.AsyncClient,
    account: OpenedAccount,
    database_url: str,
) -> None:
    async with runtime.db.write() as session:
        await invite_member(session, runtime.engine, account.organization, email="dup@example.com")
        racing = asyncio.create_task(invite(client, account.owner_api_key, "DUP@example.com"))
        if runtime.db.dialect == "postgresql":
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            for _ in range(200):
                if (await session.execute(text(waiting))).scalar_one():
                    break
                await asyncio.sleep(0.05)
        else:
            await asyncio.sleep(0.3)
    answer = await racing
    members = (await page(client, account))["members"]
    assert sorted(m["email"].lower() for m in members) == sorted(
        [account.owner.email, "dup@example.com"]
    )
    assert await seats(client, account) == 2
    assert answer == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "message": "DUP@example.com is already a member",
        "field": "email",
    }


# --- API keys --------------------------------------------------------------------------------


async def test_a_created_key_works_until_it_is_revoked(
    client: httpx.AsyncClient, account: OpenedAccount, clock: FrozenClock
) -> None:
    created = await graphql(
        client, account.owner_api_key, CREATE_KEY, {"name": "dashboard", "role": "MEMBER"}
    )
    answer = created["data"]["createApiKey"]
    secret = answer["secret"]
    api_key = answer["apiKey"]
    assert answer["__typename"] == "CreatedApiKey"
    assert secret.startswith("tally_")
    assert {k: v for k, v in api_key.items() if k != "id"} == {
        "name": "dashboard",
        "role": "MEMBER",
        "service": False,
        "prefix": secret[:12],
        "revokedAt": None,
    }
    readable = await graphql(client, secret, PAGE)
    assert readable["data"]["organization"]["id"] == account.organization.id

    clock.advance(timedelta(minutes=5))
    revoked = await graphql(client, account.owner_api_key, REVOKE_KEY, {"id": api_key["id"]})
    assert revoked == {
        "data": {
            "revokeApiKey": {
                "__typename": "ApiKeyRevoked",
                "apiKey": {
                    "id": api_key["id"],
                    "revokedAt": (START + timedelta(minutes=5)).isoformat(),
                },
            }
        }
    }
    refused = await graphql(client, secret, PAGE)
    assert refused["data"] == {"organization": None}
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    still = await graphql(client, account.owner_api_key, PAGE)
    assert still["data"]["organization"]["id"] == account.organization.id


async def test_a_created_service_key_may_consume(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    created = await graphql(
        client, account.owner_api_key, CREATE_KEY, {"name": "runtime", "service": True}
    )
    secret = created["data"]["createApiKey"]["secret"]
    assert created["data"]["createApiKey"]["apiKey"]["service"] is True
    body = await consume(client, secret, 5, "from-a-new-service-key")
    assert body == {"data": {"consumeUsage": decision("ACCEPTED", 5, 5, "from-a-new-service-key")}}


async def test_a_key_is_a_member_key_with_a_role_or_a_service_key(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    for variables in ({"name": "both", "role": "MEMBER", "service": True}, {"name": "neither"}):
        body = await graphql(client, account.owner_api_key, CREATE_KEY, variables)
        answer = body["data"]["createApiKey"]
        assert (answer["__typename"], answer["field"]) == ("InvalidInputError", "role")


# --- roles -----------------------------------------------------------------------------------


async def test_a_service_key_may_consume_but_not_manage_members_or_keys(
    client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    key = account.service_api_key
    consumed = await consume(client, key, 3, "service")
    assert consumed == {"data": {"consumeUsage": decision("ACCEPTED", 3, 3, "service")}}
    forbidden(await graphql(client, key, INVITE, {"email": "x@example.com"}), "inviteMember")
    forbidden(await graphql(client, key, REMOVE, {"id": account.owner.id}), "removeMember")
    forbidden(
        await graphql(client, key, CREATE_KEY, {"name": "k", "role": "OWNER"}), "createApiKey"
    )
    assert await seats(client, account) == 1


@pytest.mark.parametrize("role", [Role.MEMBER, Role.BILLING])
async def test_a_member_or_billing_key_may_read_but_not_consume(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, role: Role
) -> None:
    secret = await member_key(runtime, account, role)
    read = await graphql(client, secret, PAGE)
    assert read["data"]["organization"]["usage"]["tokens"] == {"used": 0, "remaining": 1000}

    forbidden(await consume(client, secret, 1, "nope"), "consumeUsage")
    forbidden(await graphql(client, secret, RESERVE, {"amount": 1, "key": "r"}), "reserveUsage")
    forbidden(await graphql(client, secret, RELEASE, {"id": "0" * 32}), "releaseReservation")
    forbidden(await graphql(client, secret, INVITE, {"email": "x@example.com"}), "inviteMember")
    assert (await page(client, account))["usage"]["tokens"] == {"used": 0, "remaining": 1000}
    assert await seats(client, account) == 1


async def test_an_admin_key_may_consume_and_invite(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    secret = await member_key(runtime, account, Role.ADMIN)
    consumed = await consume(client, secret, 7, "admin")
    assert consumed == {"data": {"consumeUsage": decision("ACCEPTED", 7, 7, "admin")}}
    invited = await invite(client, secret, "by-admin@example.com")
    assert invited["__typename"] == "Member"
    assert await seats(client, account) == 2


async def test_no_key_is_unauthenticated_for_every_mutation(client: httpx.AsyncClient) -> None:
    for query, variables in (
        (CONSUME, {"resource": "tokens", "amount": 1, "key": "k"}),
        (RESERVE, {"amount": 1, "key": "k"}),
        (INVITE, {"email": "x@example.com"}),
        (CREATE_KEY, {"name": "k", "service": True}),
    ):
        body = await graphql(client, None, query, variables)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
