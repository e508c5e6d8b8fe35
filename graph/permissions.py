"""Who may see and do what; every resolver asks here first."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.context import TallyContext
from graph.errors import forbidden, unauthenticated
from tally.auth import Principal
from tally.orgs import Organization, Role

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


USAGE_ROLES = (Role.OWNER, Role.ADMIN)


def usage_caller(info: Info) -> Principal:
    """A service key, or a member key with the owner or admin role; else FORBIDDEN."""
    principal = caller(info)
    if not principal.service and not principal.has_role(*USAGE_ROLES):
        raise forbidden("usage needs a service key or an owner's or admin's key")
    return principal


async def target_organization(
    info: Info, principal: Principal, organization_id: strawberry.ID | None
) -> Organization | None:
    """The organization a mutation acts on: the caller's own, or None (another or none)."""
    own = own_organization_id(principal, organization_id)
    return None if own is None else await info.context.loaders.organization.load(own)
