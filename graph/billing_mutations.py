"""The billing mutations: plan change, settings, and the billing portal."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import strawberry

from billing import repository
from billing.provider import PortalUnavailable, ProviderError
from graph.errors import Error, InvalidInputError, NotFoundError
from graph.permissions import Info
from graph.plan_change import change_plan, preview_plan_change
from graph.settings import update_organization_settings
from graph.targets import ProviderFailedError, organization_not_found, target
from tally.orgs import repository as orgs_repository


@strawberry.type(description="A customer portal session to open in the browser.")
class BillingPortalSession:
    url: str


@strawberry.type(description="The billing provider in use has no customer portal (local billing).")
class BillingPortalUnavailableError(Error):
    pass


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
    own = target(info, organization_id)
    if own is None:
        return organization_not_found()
    parts = urlsplit(return_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return InvalidInputError(
            code="INVALID_INPUT", message="returnUrl must be an http(s) URL", field="returnUrl"
        )
    runtime = info.context.runtime
    try:
        async with runtime.db.write() as session:
            organization = await orgs_repository.get_organization(session, own)
            subscription = await repository.lock_subscription(session, own)
            if organization is None or subscription is None:
                return organization_not_found()
            url = await runtime.provider.portal_url(session, organization, subscription, return_url)
    except PortalUnavailable as error:
        return BillingPortalUnavailableError(code=error.code, message=error.message)
    except ProviderError as error:
        return ProviderFailedError(code=error.code, message=error.message)
    return BillingPortalSession(url=url)


@strawberry.type(description="Mutations of the money side of the Organization page.")
class BillingMutation:
    preview_plan_change = strawberry.mutation(
        resolver=preview_plan_change,
        description="What a change would cost and block; changes nothing.",
    )
    change_plan = strawberry.mutation(
        resolver=change_plan,
        description="Upgrades take effect now with a prorated invoice; downgrades at the "
        "period's end unless timing is NOW.",
    )
    update_organization_settings = strawberry.mutation(resolver=update_organization_settings)
    create_billing_portal_session = strawberry.mutation(
        resolver=create_billing_portal_session,
        description="A Stripe customer portal URL; a typed error with local billing.",
    )
