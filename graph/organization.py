"""The Organization type and the root Query, built around the plugin-made `Usage` type.

Resolvers receive the organization's row as their parent and read through the request's
DataLoaders, so the page query costs the same few statements however large it is.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry import Parent

from billing import repository as billing_repository
from graph.billing import (
    Invoice,
    InvoiceConnection,
    PageInfo,
    Plan,
    PlanSubscription,
    invoice_cursor,
    parse_invoice_cursor,
)
from graph.errors import bad_input
from graph.members import Member
from graph.permissions import Info, caller, member, own_organization_id
from graph.usage import ResourceDefinition
from tally.orgs import Organization as OrganizationRow

MAX_PAGE = 100


async def _plan(root: Parent[OrganizationRow], info: Info) -> Plan:
    return Plan.of((await info.context.loaders.subscription.load(root.id)).plan)


async def _subscription(root: Parent[OrganizationRow], info: Info) -> PlanSubscription:
    return PlanSubscription.of(await info.context.loaders.subscription.load(root.id))


async def _members(root: Parent[OrganizationRow], info: Info) -> list[Member]:
    return [Member.of(row) for row in await info.context.loaders.members.load(root.id)]


async def _invoices(
    root: Parent[OrganizationRow], info: Info, first: int | None = 10, after: str | None = None
) -> InvoiceConnection:
    first = 10 if first is None else first
    if not 1 <= first <= MAX_PAGE:
        raise bad_input(f"first must be 1 to {MAX_PAGE}, not {first}")
    cursor = parse_invoice_cursor(after) if after else None
    async with info.context.runtime.db.read() as session:
        rows = await billing_repository.list_invoices(session, root.id, first + 1, cursor)
    page = rows[:first]
    return InvoiceConnection(
        nodes=[Invoice.of(row) for row in page],
        page_info=PageInfo(
            has_next_page=len(rows) > first,
            end_cursor=invoice_cursor(page[-1]) if page else None,
        ),
    )


def _plans(info: Info) -> list[Plan]:
    caller(info)
    return [Plan.of(plan) for plan in info.context.runtime.catalog]


def _resources(info: Info) -> list[ResourceDefinition]:
    caller(info)
    return [ResourceDefinition.of(resource) for resource in info.context.runtime.engine.registry]


def build_query(usage_type: type) -> type:
    """The Query type, whose `Organization.usage` is `usage_type`."""

    async def usage(root: Parent[OrganizationRow], info: Info) -> Any:
        return await info.context.loaders.usage.load(root.id)

    usage.__annotations__["return"] = usage_type
    organization_type = strawberry.type(
        type(
            "Organization",
            (),
            {
                "__annotations__": {"id": strawberry.ID, "name": str},
                "usage": strawberry.field(resolver=usage),
                "plan": strawberry.field(resolver=_plan),
                "subscription": strawberry.field(resolver=_subscription),
                "invoices": strawberry.field(resolver=_invoices, description="Newest first."),
                "members": strawberry.field(resolver=_members),
            },
        ),
        description="An organization: its plan, usage, invoices and members.",
    )

    async def organization(info: Info, id: strawberry.ID | None = None) -> Any:
        principal = member(info)
        organization_id = own_organization_id(principal, id)
        if organization_id is None:
            return None
        return await info.context.loaders.organization.load(organization_id)

    organization.__annotations__["return"] = organization_type | None
    return strawberry.type(
        type(
            "Query",
            (),
            {
                "organization": strawberry.field(
                    resolver=organization,
                    description="The caller's organization; null for any other id.",
                ),
                "plans": strawberry.field(resolver=_plans, description="Cheapest first."),
                "resources": strawberry.field(
                    resolver=_resources,
                    description="Every limited resource the installed plugins register.",
                ),
            },
        )
    )
