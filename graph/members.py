"""GraphQL types of the people of an organization."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import Parent

from graph.permissions import Info
from tally.orgs import Member as MemberRow
from tally.orgs import Organization as OrganizationRow


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
