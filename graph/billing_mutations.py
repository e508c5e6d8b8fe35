"""The billing mutations: plan change, settings, and the billing portal."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.billing import Invoice, invoice_node
from graph.errors import (
    BillingPortalUnavailableError,
    InvalidInputError,
    NotFoundError,
    ProviderFailedError,
)
from graph.permissions import BillingRoles, Info, mutation, target_id
from graph.plan_change import (
    cancel_scheduled_change,
    change_plan,
    preview_plan_change,
    set_cancel_at_period_end,
)
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


@strawberry.type(description="An invoice marked paid (or found paid already).")
class InvoicePaid:
    invoice: Invoice


MarkInvoicePaidResult = Annotated[
    InvoicePaid | NotFoundError | InvalidInputError,
    strawberry.union("MarkInvoicePaidResult"),
]


async def mark_invoice_paid(
    info: Info, *, organization_id: strawberry.ID | None = None, invoice_id: strawberry.ID
) -> MarkInvoicePaidResult:
    own = target_id(info, organization_id)
    row = await info.context.services.billing.mark_invoice_paid(own, str(invoice_id))
    return InvoicePaid(invoice=await invoice_node(row, info))


@strawberry.type(description="A Stripe Checkout page where the customer adds a card.")
class CheckoutSession:
    url: str


CheckoutSessionResult = Annotated[
    CheckoutSession
    | BillingPortalUnavailableError
    | InvalidInputError
    | NotFoundError
    | ProviderFailedError,
    strawberry.union("CheckoutSessionResult"),
]


async def create_checkout_session(
    info: Info, *, organization_id: strawberry.ID | None = None, return_url: str
) -> CheckoutSessionResult:
    own = target_id(info, organization_id)
    return CheckoutSession(url=await info.context.services.billing.checkout_url(own, return_url))


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
    cancel_scheduled_change = mutation(
        cancel_scheduled_change,
        description="Undo the plan change scheduled for the period's end.",
        permission=BillingRoles,
    )
    set_cancel_at_period_end = mutation(
        set_cancel_at_period_end,
        description="Cancel the subscription at the period's end (cancel: true), or take "
        "that back (cancel: false).",
        permission=BillingRoles,
    )
    update_organization_settings = mutation(
        update_organization_settings,
        description="Change the billing settings printed on invoices.",
        permission=BillingRoles,
    )
    mark_invoice_paid = mutation(
        mark_invoice_paid,
        description="Settle a local invoice paid outside Tally (a transfer): status paid; "
        "usage suspended for late payment is restored once nothing is overdue. Marking a paid "
        "invoice again answers it as it is; a credit note is INVOICE_NOT_PAYABLE.",
        permission=BillingRoles,
    )
    create_billing_portal_session = mutation(
        create_billing_portal_session,
        description="A Stripe customer portal URL; a typed error with local billing.",
        permission=BillingRoles,
    )
    create_checkout_session = mutation(
        create_checkout_session,
        description="A Stripe Checkout page (setup mode) to add a payment method; a typed "
        "error with local billing.",
        permission=BillingRoles,
    )
