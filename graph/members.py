"""GraphQL types of the people of an organization."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry import Parent

from core.orgs import ApiKey as ApiKeyRow
from core.orgs import Member as MemberRow
from core.orgs import Organization as OrganizationRow
from core.orgs import Role
from graph.errors import InvalidInputError, LimitExceededError, NotFoundError
from graph.permissions import Info, Managers, caller, mutation, query, target


@strawberry.type(description="A person with access to the organization; each holds a seat.")
class Member:
    id: strawberry.ID
    email: str
    name: str
    role: Role
    status: str = strawberry.field(description="active or invited")
    created_at: datetime

    @classmethod
    def of(cls, row: MemberRow) -> Member:
        return cls(
            id=strawberry.ID(row.id),
            email=row.email,
            name=row.name,
            role=Role(row.role),
            status=row.status,
            created_at=row.created_at,
        )


async def _members(root: Parent[OrganizationRow], info: Info) -> list[Member]:
    return [Member.of(row) for row in await info.context.loaders.members.load(root.id)]


async def _api_keys(root: Parent[OrganizationRow], info: Info) -> list[ApiKey]:
    return [ApiKey.of(row) for row in await info.context.services.accounts.keys(root.id)]


def organization_fields() -> dict[str, Any]:
    """The people side of `Organization`."""
    return {
        "members": strawberry.field(resolver=_members),
        "api_keys": query(
            _api_keys,
            permission=Managers,
            description="Every API key of the organization, revoked ones included, the newest "
            "first; never a secret.",
        ),
    }


@strawberry.type(description="An API key; its secret is shown only once, when created.")
class ApiKey:
    id: strawberry.ID
    name: str
    role: Role | None
    service: bool
    prefix: str = strawberry.field(description="The secret's first characters, to recognize it.")
    member_id: strawberry.ID | None = strawberry.field(
        description="The member the key belongs to (revoked when they are removed); null for a "
        "service key."
    )
    created_at: datetime
    expires_at: datetime | None = strawberry.field(description="Refused from then on; null: never.")
    last_used_at: datetime | None = strawberry.field(
        description="The last use, to the minute (written at most once a minute)."
    )
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            role=Role(row.role) if row.role else None,
            service=row.service,
            prefix=row.prefix,
            member_id=strawberry.ID(row.member_id) if row.member_id else None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


@strawberry.type(description="A new API key and its secret (shown this once).")
class CreatedApiKey:
    api_key: ApiKey
    secret: str


@strawberry.type
class MemberRemoved:
    member: Member


@strawberry.type
class MemberRoleChanged:
    member: Member


@strawberry.type
class ApiKeyRevoked:
    api_key: ApiKey


InviteMemberResult = Annotated[
    Member | LimitExceededError | InvalidInputError | NotFoundError,
    strawberry.union("InviteMemberResult"),
]
RemoveMemberResult = Annotated[
    MemberRemoved | InvalidInputError | NotFoundError, strawberry.union("RemoveMemberResult")
]
ChangeMemberRoleResult = Annotated[
    MemberRoleChanged | InvalidInputError | NotFoundError,
    strawberry.union("ChangeMemberRoleResult"),
]
CreateApiKeyResult = Annotated[
    CreatedApiKey | InvalidInputError | NotFoundError, strawberry.union("CreateApiKeyResult")
]
RevokeApiKeyResult = Annotated[
    ApiKeyRevoked | InvalidInputError | NotFoundError, strawberry.union("RevokeApiKeyResult")
]


async def _invite_member(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    email: str,
    role: Role | None = Role.MEMBER,
) -> InviteMemberResult:
    organization = await target(info, organization_id)
    accounts = info.context.services.accounts
    row = await accounts.invite(organization, email, role or Role.MEMBER, caller(info))
    return Member.of(row)


async def _remove_member(info: Info, member_id: strawberry.ID) -> RemoveMemberResult:
    organization = await target(info)
    row = await info.context.services.accounts.remove(organization, str(member_id), caller(info))
    return MemberRemoved(member=Member.of(row))


async def _change_member_role(
    info: Info, member_id: strawberry.ID, role: Role
) -> ChangeMemberRoleResult:
    organization = await target(info)
    accounts = info.context.services.accounts
    row = await accounts.change_role(organization, str(member_id), role, caller(info))
    return MemberRoleChanged(member=Member.of(row))


async def _create_api_key(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    name: str,
    role: Role | None = None,
    service: bool | None = False,
    expires_at: datetime | None = None,
    member_id: strawberry.ID | None = None,
) -> CreateApiKeyResult:
    organization = await target(info, organization_id)
    key, secret = await info.context.services.accounts.create_key(
        organization,
        name,
        role,
        bool(service),
        caller(info),
        expires_at=expires_at,
        member_id=str(member_id) if member_id is not None else None,
    )
    return CreatedApiKey(api_key=ApiKey.of(key), secret=secret)


async def _revoke_api_key(info: Info, api_key_id: strawberry.ID) -> RevokeApiKeyResult:
    organization = await target(info)
    row = await info.context.services.accounts.revoke(organization, str(api_key_id), caller(info))
    return ApiKeyRevoked(api_key=ApiKey.of(row))


@strawberry.type
class MemberMutation:
    invite_member = mutation(
        _invite_member,
        description="Invite a person; they take a seat from now on.",
        permission=Managers,
    )
    remove_member = mutation(
        _remove_member,
        description="Remove a member, revoke their keys and give their seat back (not the last "
        "owner, nor a member whose role is above yours).",
        permission=Managers,
    )
    change_member_role = mutation(
        _change_member_role,
        description="Give a member another role, at most yours; their keys above it are lowered "
        "to it. The last owner cannot be demoted.",
        permission=Managers,
    )
    create_api_key = mutation(
        _create_api_key,
        description="Create an API key: a member key with a role at most yours (and at most its "
        "member's; the key belongs to `memberId`, yours by default), or a service key. "
        "`expiresAt` (optional) must be ahead.",
        permission=Managers,
    )
    revoke_api_key = mutation(
        _revoke_api_key, description="Revoke an API key at once.", permission=Managers
    )
