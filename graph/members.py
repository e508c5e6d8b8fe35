"""GraphQL types of the people of an organization."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import Parent

from billing.accounts import (
    AccountError,
    SeatLimitReached,
    create_api_key,
    invite_member,
    remove_member,
    revoke_api_key,
)
from graph.errors import InvalidInputError, LimitExceededError, NotFoundError
from graph.permissions import Info, member, target_organization
from graph.scalars import BigInt
from tally.orgs import ApiKey as ApiKeyRow
from tally.orgs import Member as MemberRow
from tally.orgs import Organization as OrganizationRow
from tally.orgs import Role as RoleValue

MANAGERS = (RoleValue.OWNER, RoleValue.ADMIN)


@strawberry.enum(description="A member's role.")
class Role(Enum):
    OWNER = "owner"
    ADMIN = "admin"
    BILLING = "billing"
    MEMBER = "member"


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


def _not_found(what: str) -> NotFoundError:
    return NotFoundError(code="NOT_FOUND", message=f"no such {what}")


def _invalid(error: AccountError) -> InvalidInputError:
    return InvalidInputError(code="INVALID_INPUT", message=str(error), field=error.field)


@strawberry.type
class MemberMutation:
    @strawberry.mutation(description="Invite a person; they take a seat from now on.")
    async def invite_member(
        self,
        info: Info,
        *,
        organization_id: strawberry.ID | None = None,
        email: str,
        role: Role | None = Role.MEMBER,
    ) -> InviteMemberResult:
        role = role or Role.MEMBER
        organization = await target_organization(info, member(info, *MANAGERS), organization_id)
        if organization is None:
            return _not_found("organization")
        runtime = info.context.runtime
        try:
            async with runtime.db.write() as session:
                row = await invite_member(
                    session,
                    runtime.engine,
                    organization,
                    email=email,
                    role=RoleValue(role.value),
                )
        except SeatLimitReached as error:
            async with runtime.db.read() as session:
                seats = (await runtime.engine.usage(session, organization)).get("seats")
            return LimitExceededError(
                code="LIMIT_EXCEEDED",
                message=str(error),
                resource="seats",
                used=BigInt(seats.used),
                requested=BigInt(1),
                limit=BigInt(seats.limit.value) if seats.limit.value is not None else None,
            )
        except AccountError as error:
            return _invalid(error)
        return Member.of(row)

    @strawberry.mutation(description="Remove a member and give their seat back.")
    async def remove_member(self, info: Info, member_id: strawberry.ID) -> RemoveMemberResult:
        organization = await target_organization(info, member(info, *MANAGERS), None)
        assert organization is not None
        runtime = info.context.runtime
        try:
            async with runtime.db.write() as session:
                row = await remove_member(session, runtime.engine, organization, str(member_id))
        except AccountError as error:
            return _invalid(error)
        return _not_found("member") if row is None else MemberRemoved(member=Member.of(row))

    @strawberry.mutation(
        description="Create an API key: a member key with a role, or a service key."
    )
    async def create_api_key(
        self,
        info: Info,
        *,
        organization_id: strawberry.ID | None = None,
        name: str,
        role: Role | None = None,
        service: bool | None = False,
    ) -> CreateApiKeyResult:
        service = bool(service)
        organization = await target_organization(info, member(info, *MANAGERS), organization_id)
        if organization is None:
            return _not_found("organization")
        if service == (role is not None):
            return InvalidInputError(
                code="INVALID_INPUT",
                field="role",
                message="give a role for a member key, or service: true without a role",
            )
        if not name.strip() or len(name) > 200:
            return InvalidInputError(
                code="INVALID_INPUT", field="name", message="a key name needs 1 to 200 characters"
            )
        runtime = info.context.runtime
        async with runtime.db.write() as session:
            key, secret = await create_api_key(
                session,
                runtime.engine,
                organization,
                name=name.strip(),
                role=RoleValue(role.value) if role else None,
                service=service,
            )
        return CreatedApiKey(api_key=ApiKey.of(key), secret=secret)

    @strawberry.mutation(description="Revoke an API key at once.")
    async def revoke_api_key(self, info: Info, api_key_id: strawberry.ID) -> RevokeApiKeyResult:
        organization = await target_organization(info, member(info, *MANAGERS), None)
        assert organization is not None
        runtime = info.context.runtime
        async with runtime.db.write() as session:
            row = await revoke_api_key(session, runtime.engine, organization, str(api_key_id))
        return _not_found("API key") if row is None else ApiKeyRevoked(api_key=ApiKey.of(row))
