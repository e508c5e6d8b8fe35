"""GDPR mutations: the export of an organization's data and its deletion, for owners only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from billing.gdpr import GdprService
from core.orgs import Role
from graph.errors import InvalidInputError, NotFoundError
from graph.permissions import Info, RoleSet, mutation, target


class Owners(RoleSet):
    """The organization's owners (its data as a whole: export, deletion)."""

    roles = (Role.OWNER,)


def gdpr_service(info: Info) -> GdprService:
    """The GDPR service over the request's services."""
    services = info.context.services
    links = services.links
    return GdprService(services.db, links.clock, links, services.accounts.provider)


@strawberry.type(
    description="A signed link to a JSON archive of everything Tally holds about the "
    "organization; it works for anyone holding it until `expiresAt`."
)
class OrganizationExport:
    url: str
    expires_at: datetime


@strawberry.type(
    description="The organization's personal data erased and its account closed; its invoices "
    "are kept as issued."
)
class OrganizationDeleted:
    organization_id: strawberry.ID
    members_erased: int
    keys_revoked: int
    usage_events_cleared: int


ExportOrganizationDataResult = Annotated[
    OrganizationExport | NotFoundError, strawberry.union("ExportOrganizationDataResult")
]
DeleteOrganizationResult = Annotated[
    OrganizationDeleted | InvalidInputError | NotFoundError,
    strawberry.union("DeleteOrganizationResult"),
]


async def _export_organization_data(
    info: Info, organization_id: strawberry.ID | None = None
) -> ExportOrganizationDataResult:
    organization = await target(info, organization_id)
    link = await gdpr_service(info).export_link(organization.id)
    return OrganizationExport(url=link.url, expires_at=link.expires_at)


async def _delete_organization(
    info: Info, confirm: str, organization_id: strawberry.ID | None = None
) -> DeleteOrganizationResult:
    organization = await target(info, organization_id)
    erasure = await gdpr_service(info).delete_organization(organization.id, confirm)
    return OrganizationDeleted(
        organization_id=strawberry.ID(erasure.organization.id),
        members_erased=erasure.members_erased,
        keys_revoked=erasure.keys_revoked,
        usage_events_cleared=erasure.events_cleared,
    )


@strawberry.type
class GdprMutation:
    export_organization_data = mutation(
        _export_organization_data,
        description="A link, valid 24 hours, to a JSON archive of everything Tally holds about "
        "the organization: members, API keys' metadata (never secrets), settings, subscription "
        "and plan history, usage events, invoices with their documents, top-ups, audit log.",
        permission=Owners,
    )
    delete_organization = mutation(
        _delete_organization,
        description="Erase the organization's personal data (members' names and emails, contact "
        "settings, usage events' attributes), revoke every key and close the account; issued "
        "invoices are kept as the law requires. `confirm` must be the organization's name. "
        "Cannot be undone.",
        permission=Owners,
    )
