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
from graph.permissions import Info, Managers, mutation, target


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


def organization_fields() -> dict[str, Any]:
    """The people side of `Organization`."""
    return {"members": strawberry.field(resolver=_members)}


@strawberry.type(description="An API key; its secret is shown only once, when created.")
class ApiKey:
    id: strawberry.ID
    name: str
    role: Role | None
    service: bool
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            role=Role(row.role) if row.role else None,
            service=row.service,
            prefix=row.prefix,
            created_at=row.created_at,
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
class ApiKeyRevoked:
    api_key: ApiKey


InviteMemberResult = Annotated[
    Member | LimitExceededError | InvalidInputError | NotFoundError,
    strawberry.union("InviteMemberResult"),
]
RemoveMemberResult = Annotated[
    MemberRemoved | InvalidInputError | NotFoundError, strawberry.union("RemoveMemberResult")
]
CreateApiKeyResult = Annotated[
    CreatedApiKey | InvalidInputError | NotFoundError, strawberry.union("CreateApiKeyResult")
]
RevokeApiKeyResult = Annotated[
    ApiKeyRevoked | NotFoundError, strawberry.union("RevokeApiKeyResult")
]


async def _invite_member(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    email: str,
    role: Role | None = Role.MEMBER,
) -> InviteMemberResult:
    organization = await target(info, organization_id)
    row = await info.context.services.accounts.invite(organization, email, role or Role.MEMBER)
    return Member.of(row)


async def _remove_member(info: Info, member_id: strawberry.ID) -> RemoveMemberResult:
    organization = await target(info)
    row = await info.context.services.accounts.remove(organization, str(member_id))
    return MemberRemoved(member=Member.of(row))


async def _create_api_key(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    name: str,
    role: Role | None = None,
    service: bool | None = False,
) -> CreateApiKeyResult:
    organization = await target(info, organization_id)
    accounts = info.context.services.accounts
    key, secret = await accounts.create_key(organization, name, role, bool(service))
    return CreatedApiKey(api_key=ApiKey.of(key), secret=secret)


async def _revoke_api_key(info: Info, api_key_id: strawberry.ID) -> RevokeApiKeyResult:
    organization = await target(info)
    row = await info.context.services.accounts.revoke(organization, str(api_key_id))
    return ApiKeyRevoked(api_key=ApiKey.of(row))


@strawberry.type
class MemberMutation:
    invite_member = mutation(
        _invite_member,
        description="Invite a person; they take a seat from now on.",
        permission=Managers,
    )
    remove_member = mutation(
        _remove_member, description="Remove a member and give their seat back.", permission=Managers
    )
    create_api_key = mutation(
        _create_api_key,
        description="Create an API key: a member key with a role, or a service key.",
        permission=Managers,
    )
    revoke_api_key = mutation(
        _revoke_api_key, description="Revoke an API key at once.", permission=Managers
    )
