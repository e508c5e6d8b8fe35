"""GraphQL of plan changes: the preview, the change, and their typed errors."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry

from billing import repository
from billing.plan_change import (
    Blocker,
    PlanChangeBlocked,
    PlanChangeError,
    Preview,
    ResourceComparison,
)
from billing.provider import ProviderError, Timing
from billing.subscriptions import subscription_of
from graph.billing import Invoice, Money, Plan, PlanSubscription, invoice_node
from graph.errors import Error, InvalidInputError, NotFoundError
from graph.permissions import Info
from graph.scalars import BigInt
from graph.targets import ProviderFailedError, organization_not_found, target
from graph.usage import ResourceKind
from tally.orgs import repository as orgs_repository


@strawberry.enum(
    description="When a change takes effect; AUTO: upgrades now, downgrades at the period's end."
)
class PlanChangeTiming(Enum):
    AUTO = "auto"
    NOW = "now"
    PERIOD_END = "period_end"


@strawberry.type(description="A count above the new plan's limit that blocks the change.")
class PlanChangeBlocker:
    resource: str
    used: BigInt
    new_limit: BigInt
    message: str


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
    timing: PlanChangeTiming
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
            timing=PlanChangeTiming(preview.timing.value),
            effective_at=preview.effective_at,
            allowed=preview.allowed,
            amount_due_now=Money.of(proration.amount_due),
            credit=Money.of(proration.credit),
            charge=Money.of(proration.charge),
            carried_credit=Money.of(proration.carried_credit),
            resources=[PlanResourceChange.of(item) for item in preview.resources],
            blockers=[_blocker(b) for b in preview.blockers],
            warnings=list(preview.warnings),
        )


def _blocker(blocker: Blocker) -> PlanChangeBlocker:
    return PlanChangeBlocker(
        resource=blocker.resource,
        used=BigInt(blocker.used),
        new_limit=BigInt(blocker.new_limit),
        message=blocker.message,
    )


@strawberry.type(description="A plan change applied now, or scheduled for the period's end.")
class PlanChanged:
    subscription: PlanSubscription
    invoice: Invoice | None
    effective_at: dt.datetime


@strawberry.type(description="Resources in use above the new plan's limits; nothing changed.")
class PlanChangeBlockedError(Error):
    blockers: list[PlanChangeBlocker]


PreviewPlanChangeResult = Annotated[
    PlanChangePreview | InvalidInputError | NotFoundError,
    strawberry.union("PreviewPlanChangeResult"),
]
ChangePlanResult = Annotated[
    PlanChanged | PlanChangeBlockedError | InvalidInputError | NotFoundError | ProviderFailedError,
    strawberry.union("ChangePlanResult"),
]


def _refusal(error: PlanChangeError) -> InvalidInputError | NotFoundError | PlanChangeBlockedError:
    if isinstance(error, PlanChangeBlocked):
        blockers = [_blocker(b) for b in error.blockers]
        return PlanChangeBlockedError(code=error.code, message=error.message, blockers=blockers)
    if error.code == "PLAN_NOT_FOUND":
        return NotFoundError(code=error.code, message=error.message)
    field = "idempotencyKey" if error.code == "IDEMPOTENCY_KEY_REUSED" else "planId"
    return InvalidInputError(code=error.code, message=error.message, field=field)


async def preview_plan_change(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    plan_id: strawberry.ID,
    timing: PlanChangeTiming | None = PlanChangeTiming.AUTO,
) -> PreviewPlanChangeResult:
    runtime = info.context.runtime
    own = target(info, organization_id)
    if own is None:
        return organization_not_found()
    async with runtime.db.read() as session:
        organization = await orgs_repository.get_organization(session, own)
        if organization is None:
            return organization_not_found()
        try:
            preview = await runtime.plan_changes.preview(
                session, organization, str(plan_id), Timing((timing or PlanChangeTiming.AUTO).value)
            )
        except PlanChangeError as error:
            refusal = _refusal(error)
            assert not isinstance(refusal, PlanChangeBlockedError)
            return refusal
    return PlanChangePreview.of(preview)


async def change_plan(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    plan_id: strawberry.ID,
    timing: PlanChangeTiming | None = PlanChangeTiming.AUTO,
    idempotency_key: str | None = None,
) -> ChangePlanResult:
    runtime = info.context.runtime
    own = target(info, organization_id)
    if own is None:
        return organization_not_found()
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        return InvalidInputError(
            code="INVALID_INPUT", message="idempotencyKey needs 1 to 200 characters",
            field="idempotencyKey",
        )  # fmt: skip
    try:
        async with runtime.db.write() as session:
            organization = await repository.lock_organization(session, own)
            if organization is None:
                return organization_not_found()
            changed = await runtime.plan_changes.change(
                session,
                organization,
                str(plan_id),
                Timing((timing or PlanChangeTiming.AUTO).value),
                idempotency_key,
            )
            view = await subscription_of(session, runtime.engine, runtime.catalog, organization)
    except PlanChangeError as error:
        return _refusal(error)
    except ProviderError as error:
        return ProviderFailedError(code=error.code, message=error.message)
    return PlanChanged(
        subscription=PlanSubscription.of(view),
        invoice=await invoice_node(changed.invoice, info) if changed.invoice else None,
        effective_at=changed.plan_change.effective_at,
    )
