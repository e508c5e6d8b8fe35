"""The billing mutations: plan change, settings, and the billing portal."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.errors import (
    BillingPortalUnavailableError,
    InvalidInputError,
    NotFoundError,
    ProviderFailedError,
)
from graph.permissions import BillingRoles, Info, mutation, target_id
from graph.plan_change import change_plan, preview_plan_change
from graph.settings import update_organization_settings


@strawberry.type(description="A customer portal session to open in the browser.")
class BillingPortalSession:
    url: str


BillingPortalResult = Annotated[
    BillingPortalSession
    | BillingPortalUnavailableError
    | InvalidInputError
    | NotFoundError
    | ProviderFailedError,
    strawberry.union("BillingPortalResult"),
]


async def create_billing_portal_session(
    info: Info, *, organization_id: strawberry.ID | None = None, return_url: str
) -> BillingPortalResult:
    own = target_id(info, organization_id)
    return BillingPortalSession(url=await info.context.services.billing.portal_url(own, return_url))


@strawberry.type(description="Mutations of the money side of the Organization page.")
class BillingMutation:
    preview_plan_change = mutation(
        preview_plan_change,
        description="What a change would cost and block; changes nothing.",
        permission=BillingRoles,
    )
    change_plan = mutation(
        change_plan,
        description="Upgrades take effect now with a prorated invoice; downgrades at the "
        "period's end unless timing is NOW.",
        permission=BillingRoles,
    )
    update_organization_settings = mutation(
        update_organization_settings,
        description="Change the billing settings printed on invoices.",
        permission=BillingRoles,
    )
    create_billing_portal_session = mutation(
        create_billing_portal_session,
        description="A Stripe customer portal URL; a typed error with local billing.",
        permission=BillingRoles,
    )
