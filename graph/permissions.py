"""Who may see and do what: a Strawberry permission class per role set, declared on each
field, and `mutation()`, which refuses a mutation without a description, a permission or an
error union, and says in the schema which roles it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from core.auth import USAGE_ROLES, Principal
from core.errors import NotFound
from core.orgs import Organization, Role
from graph.context import TallyContext
from graph.errors import DomainErrors, forbidden, unauthenticated

Info = strawberry.Info[TallyContext, Any]


def caller(info: Info) -> Principal:
    """The authenticated principal, or UNAUTHENTICATED."""
    principal = info.context.principal
    if principal is None:
        raise unauthenticated()
    return principal


class RoleSet(BasePermission):
    """Member keys with one of `roles`; service keys too when `service_keys`."""

    roles: ClassVar[tuple[Role, ...]]
    service_keys: ClassVar[bool] = False

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = caller(info)
        if principal.service and not self.service_keys:
            raise forbidden("service keys carry the usage scope only; use a member's key")
        if not principal.service and not principal.has_role(*self.roles):
            raise forbidden(self.refusal())
        return True

    @classmethod
    def refusal(cls) -> str:
        return f"this needs one of the roles: {cls.names()}"

    @classmethod
    def names(cls) -> str:
        return ", ".join(role.value for role in cls.roles)

    @classmethod
    def requirement(cls) -> str:
        keys = "a service key, or " if cls.service_keys else ""
        return f"Requires {keys}one of the roles: {cls.names()}."


class AnyMember(RoleSet):
    """Any member of the organization (reading the page)."""

    roles = (Role.OWNER, Role.ADMIN, Role.BILLING, Role.MEMBER)


class Authenticated(RoleSet):
    """Any valid key, a service key included (the catalog of plans and resources)."""

    roles = AnyMember.roles
    service_keys = True


class BillingRoles(RoleSet):
    """Plan changes, billing settings, the portal."""

    roles = (Role.OWNER, Role.ADMIN, Role.BILLING)


class Managers(RoleSet):
    """Members and API keys."""

    roles = (Role.OWNER, Role.ADMIN)


class UsageCallers(RoleSet):
    """Service keys, and members whose role may record usage."""

    roles = USAGE_ROLES
    service_keys = True

    @classmethod
    def refusal(cls) -> str:
        return "usage needs a service key or an owner's or admin's key"


def own_organization_id(principal: Principal, organization_id: strawberry.ID | None) -> str | None:
    """The caller's organization id when `organization_id` is omitted or is the caller's own;
    None for any other, exactly as for an organization that does not exist."""
    if organization_id is None or str(organization_id) == principal.organization_id:
        return principal.organization_id
    return None


def target_id(info: Info, organization_id: strawberry.ID | None) -> str:
    """The id of the organization a mutation acts on: the caller's own; NotFound otherwise."""
    own = own_organization_id(caller(info), organization_id)
    if own is None:
        raise NotFound.of("organization")
    return own


async def target(info: Info, organization_id: strawberry.ID | None = None) -> Organization:
    """The organization a mutation acts on: the caller's own; NotFound for any other id."""
    organization = await info.context.loaders.organization.load(target_id(info, organization_id))
    if organization is None:
        raise NotFound.of("organization")
    return organization


def mutation(resolver: Callable[..., Any], *, description: str, permission: type[RoleSet]) -> Any:
    """A mutation field: its permission declared (and said in its description), its domain
    failures answered by its result union's error members."""
    if not description.strip():
        raise TypeError(f"mutation {resolver.__name__} needs a description")
    return strawberry.mutation(
        resolver=resolver,
        description=f"{description} {permission.requirement()}",
        extensions=[
            PermissionExtension(permissions=[permission()], use_directives=False),
            DomainErrors(),
        ],
    )


def query(resolver: Callable[..., Any], *, permission: type[RoleSet], description: str = "") -> Any:
    """A query field with its permission declared."""
    return strawberry.field(
        resolver=resolver,
        description=description or None,
        extensions=[PermissionExtension(permissions=[permission()], use_directives=False)],
    )
