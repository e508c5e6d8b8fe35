"""GraphQL of plan changes: the preview, the change, and their typed errors."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from billing.plan_change import Preview, ResourceComparison
from billing.provider import Timing
from graph.billing import Invoice, Money, Plan, PlanSubscription, invoice_node
from graph.errors import (
    InvalidInputError,
    NotFoundError,
    PlanChangeBlockedError,
    PlanChangeBlocker,
    ProviderFailedError,
)
from graph.permissions import Info, target_id
from graph.scalars import BigInt
from limits import ResourceKind


@strawberry.type(description="One resource: its usage against the current and the new limit.")
class PlanResourceChange:
    resource: str
    label: str
    kind: ResourceKind
    used: BigInt
    current_limit: BigInt | None
    new_limit: BigInt | None
    fits: bool

    @classmethod
    def of(cls, item: ResourceComparison) -> PlanResourceChange:
        meter, new = item.meter, item.new_limit.value
        return cls(
            resource=meter.resource.key,
            label=meter.resource.label,
            kind=ResourceKind(meter.resource.kind),
            used=BigInt(meter.used),
            current_limit=BigInt(meter.limit.value) if meter.limit.value is not None else None,
            new_limit=BigInt(new) if new is not None else None,
            fits=item.fits,
        )


@strawberry.type(description="What a plan change would do; amounts exclude tax.")
class PlanChangePreview:
    current_plan: Plan
    new_plan: Plan
    timing: Timing
    effective_at: dt.datetime
    allowed: bool
    amount_due_now: Money
    credit: Money = strawberry.field(description="The current plan's unused time.")
    charge: Money = strawberry.field(description="The new plan for the rest of the period.")
    carried_credit: Money = strawberry.field(description="Credit kept for the next invoices.")
    resources: list[PlanResourceChange]
    blockers: list[PlanChangeBlocker]
    warnings: list[str]

    @classmethod
    def of(cls, preview: Preview) -> PlanChangePreview:
        proration = preview.proration
        return cls(
            current_plan=Plan.of(preview.current),
            new_plan=Plan.of(preview.new),
            timing=preview.timing,
            effective_at=preview.effective_at,
            allowed=preview.allowed,
            amount_due_now=Money.of(proration.amount_due),
            credit=Money.of(proration.credit),
            charge=Money.of(proration.charge),
            carried_credit=Money.of(proration.carried_credit),
            resources=[PlanResourceChange.of(item) for item in preview.resources],
            blockers=[PlanChangeBlocker.of(b) for b in preview.blockers],
            warnings=list(preview.warnings),
        )


@strawberry.type(description="A plan change applied now, or scheduled for the period's end.")
class PlanChanged:
    subscription: PlanSubscription
    invoice: Invoice | None
    effective_at: dt.datetime


PreviewPlanChangeResult = Annotated[
    PlanChangePreview | InvalidInputError | NotFoundError,
    strawberry.union("PreviewPlanChangeResult"),
]
ChangePlanResult = Annotated[
    PlanChanged | PlanChangeBlockedError | InvalidInputError | NotFoundError | ProviderFailedError,
    strawberry.union("ChangePlanResult"),
]


@strawberry.type(
    description="The subscription after a scheduled change was undone or "
    "cancellation at the period's end was set or unset."
)
class SubscriptionChanged:
    subscription: PlanSubscription


CancelScheduledChangeResult = Annotated[
    SubscriptionChanged | InvalidInputError | NotFoundError | ProviderFailedError,
    strawberry.union("CancelScheduledChangeResult"),
]
SetCancelAtPeriodEndResult = Annotated[
    SubscriptionChanged | InvalidInputError | NotFoundError | ProviderFailedError,
    strawberry.union("SetCancelAtPeriodEndResult"),
]


async def preview_plan_change(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    plan_id: strawberry.ID,
    timing: Timing | None = Timing.AUTO,
) -> PreviewPlanChangeResult:
    own = target_id(info, organization_id)
    billing = info.context.services.billing
    preview = await billing.preview_change(own, str(plan_id), timing or Timing.AUTO)
    return PlanChangePreview.of(preview)


async def change_plan(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    plan_id: strawberry.ID,
    timing: Timing | None = Timing.AUTO,
    idempotency_key: str | None = None,
) -> ChangePlanResult:
    own = target_id(info, organization_id)
    billing = info.context.services.billing
    outcome = await billing.change_plan(own, str(plan_id), timing or Timing.AUTO, idempotency_key)
    invoice = outcome.changed.invoice
    return PlanChanged(
        subscription=PlanSubscription.of(outcome.subscription),
        invoice=await invoice_node(invoice, info) if invoice else None,
        effective_at=outcome.changed.plan_change.effective_at,
    )


async def cancel_scheduled_change(
    info: Info, *, organization_id: strawberry.ID | None = None
) -> CancelScheduledChangeResult:
    own = target_id(info, organization_id)
    outcome = await info.context.services.billing.cancel_scheduled_change(own)
    return SubscriptionChanged(subscription=PlanSubscription.of(outcome.subscription))


async def set_cancel_at_period_end(
    info: Info, *, organization_id: strawberry.ID | None = None, cancel: bool
) -> SetCancelAtPeriodEndResult:
    own = target_id(info, organization_id)
    view = await info.context.services.billing.set_cancel_at_period_end(own, cancel)
    return SubscriptionChanged(subscription=PlanSubscription.of(view))
