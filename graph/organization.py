"""The Organization type and the root Query, assembled from the fields each area contributes.

Each area module (usage, billing, members) offers `organization_fields()`: resolvers that take
the organization's row as their parent and read through the request's DataLoaders, so the page
query costs the same few statements however large it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry

from graph.billing import Plan
from graph.permissions import (
    AnyMember,
    Authenticated,
    Info,
    caller,
    own_organization_id,
    query,
)
from graph.usage import ResourceDefinition


async def _plans(info: Info) -> list[Plan]:
    """The plans offered in the caller's organization's currency, priced in it."""
    organization = await info.context.loaders.organization.load(caller(info).organization_id)
    if organization is None:
        return [Plan.of(plan) for plan in info.context.services.catalog]
    currency, locale = organization.currency, organization.locale
    offered = [plan for plan in info.context.services.catalog if plan.offers(currency)]
    offered.sort(key=lambda plan: (plan.price(currency).amount_minor, plan.id))
    return [Plan.of(plan, currency, locale) for plan in offered]


def _resources(info: Info) -> list[ResourceDefinition]:
    return [ResourceDefinition.of(resource) for resource in info.context.services.engine.registry]


def build_organization_type(fields: Mapping[str, Any]) -> type:
    """`Organization`: id and name, then the fields of every area."""
    namespace: dict[str, Any] = {"__annotations__": {"id": strawberry.ID, "name": str}}
    namespace.update(fields)
    return strawberry.type(
        type("Organization", (), namespace),
        description="An organization: its plan, usage, invoices and members.",
    )


def build_query(organization_type: type) -> type:
    """The root Query around the `Organization` type."""

    async def organization(info: Info, id: strawberry.ID | None = None) -> Any:
        organization_id = own_organization_id(caller(info), id)
        if organization_id is None:
            return None
        return await info.context.loaders.organization.load(organization_id)

    organization.__annotations__["return"] = organization_type | None
    return strawberry.type(
        type(
            "Query",
            (),
            {
                "organization": query(
                    organization,
                    permission=AnyMember,
                    description="The caller's organization; null for any other id.",
                ),
                "plans": query(
                    _plans,
                    permission=Authenticated,
                    description="The plans offered in the caller's organization's currency, "
                    "priced in it, cheapest first.",
                ),
                "resources": query(
                    _resources,
                    permission=Authenticated,
                    description="Every limited resource the installed plugins register.",
                ),
            },
        )
    )
