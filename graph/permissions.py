"""Who may see and do what; every resolver asks here first."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.context import TallyContext
from graph.errors import forbidden, unauthenticated
from tally.auth import Principal
from tally.orgs import Role

Info = strawberry.Info[TallyContext, Any]

READERS = (Role.OWNER, Role.ADMIN, Role.BILLING, Role.MEMBER)


def caller(info: Info) -> Principal:
    """The authenticated principal, or UNAUTHENTICATED."""
    principal = info.context.principal
    if principal is None:
        raise unauthenticated()
    return principal


def member(info: Info, *roles: Role) -> Principal:
    """A member key with one of `roles` (default: any role), or FORBIDDEN."""
    principal = caller(info)
    allowed = roles or READERS
    if principal.service:
        raise forbidden("service keys carry the usage scope only; use a member's key")
    if not principal.has_role(*allowed):
        names = ", ".join(role.value for role in allowed)
        raise forbidden(f"this needs one of the roles: {names}")
    return principal


def own_organization_id(principal: Principal, organization_id: strawberry.ID | None) -> str | None:
    """The caller's organization id when `organization_id` is omitted or is the caller's own;
    None for any other, exactly as for an organization that does not exist."""
    if organization_id is None or str(organization_id) == principal.organization_id:
        return principal.organization_id
    return None
