"""What billing mutations share: who may call them, on which organization, and their errors."""

from __future__ import annotations

import strawberry

from graph.errors import Error, NotFoundError
from graph.permissions import Info, member, own_organization_id
from tally.orgs import Role

BILLING_ROLES = (Role.OWNER, Role.ADMIN, Role.BILLING)


@strawberry.type(
    description="The billing provider refused or could not be reached; nothing changed."
)
class ProviderFailedError(Error):
    pass


def target(
    info: Info, organization_id: strawberry.ID | None, roles: tuple[Role, ...] = BILLING_ROLES
) -> str | None:
    """The organization a mutation acts on: the caller's own, checked for `roles`; None for
    any other id, to be answered with `organization_not_found()` exactly as a missing one."""
    return own_organization_id(member(info, *roles), organization_id)


def organization_not_found() -> NotFoundError:
    return NotFoundError(code="NOT_FOUND", message="no such organization")
