"""Changing plan: the preview (proration, per-resource comparison, blockers) and the change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger_repository, plan_history, repository
from billing.catalog import Catalog, Plan
from billing.closing import close_due_periods
from billing.models import Invoice, PlanChange, Subscription
from billing.money import Money
from billing.proration import Proration, no_proration, prorate
from billing.provider import BillingProvider, ChangeRequest, ProviderError, PushedChange, Timing
from core import audit
from core.errors import Conflict, ErrorCode, InvalidInput, NotFound
from core.ids import new_id
from core.orgs import Organization
from limits import Limit, LimitEngine, Period, ResourceUsage, UsageSnapshot
from limits.display import format_amount


class PlanChangeBlocked(Conflict):
    """Gauge resources in use above the new plan's limits."""

    def __init__(self, blockers: tuple[Blocker, ...]) -> None:
        super().__init__(ErrorCode.PLAN_CHANGE_BLOCKED, "; ".join(b.message for b in blockers))
        self.blockers = blockers


@dataclass(frozen=True)
class Blocker:
    """What stands in the way of a change: a count above the new limit."""

    resource: str
    used: int
    new_limit: int
    message: str


@dataclass(frozen=True)
class ResourceComparison:
    """One resource's usage against the current and the new plan's limits."""

    meter: ResourceUsage
    new_limit: Limit

    @property
    def fits(self) -> bool:
        return self.new_limit.value is None or self.meter.used <= self.new_limit.value


@dataclass(frozen=True)
class Preview:
    """What a change to `new` would do, and whether it is allowed."""

    current: Plan
    new: Plan
    timing: Timing
    effective_at: datetime
    proration: Proration
    resources: tuple[ResourceComparison, ...]
    blockers: tuple[Blocker, ...]
    warnings: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.blockers


@dataclass(frozen=True)
class Intent:
    """A change written as pending, and the request for the provider's step."""

    plan_change: PlanChange
    request: ChangeRequest


@dataclass(frozen=True)
class Changed:
    """A change applied (NOW), scheduled (PERIOD_END) or canceled, and its invoice if one was
    issued; `replayed` when an earlier request with the same key made it."""

    plan_change: PlanChange
    invoice: Invoice | None
    replayed: bool


class PlanChanger:
    """Previews plan changes and carries them out in two short transactions around the
    provider's step (`begin`, the provider's `push_change` outside any lock, `finish`)."""

    def __init__(self, catalog: Catalog, engine: LimitEngine, provider: BillingProvider) -> None:
        self.catalog = catalog
        self.engine = engine
        self.provider = provider

    def plan(self, plan_id: str) -> Plan:
        """The plan `plan_id`; PLAN_NOT_FOUND listing the plans on offer when there is none."""
        plan = self.catalog.find(plan_id)
        if plan is None:
            offered = ", ".join(plan.id for plan in self.catalog)
            raise NotFound(
                ErrorCode.PLAN_NOT_FOUND, f"there is no plan {plan_id!r}; plans: {offered}"
            )
        return plan

    async def preview(
        self,
        session: AsyncSession,
        organization: Organization,
        plan_id: str,
        timing: Timing = Timing.AUTO,
        *,
        ask_provider: bool = True,
    ) -> Preview:
        """What a change to `plan_id` would do; the provider's own figures when
        `ask_provider` (never inside a transaction that holds locks)."""
        current, new = self.catalog.get(organization.plan_id), self.plan(plan_id)
        if new.id == current.id:
            raise InvalidInput(
                ErrorCode.SAME_PLAN, f"the organization is already on {new.name}", field="plan_id"
            )
        current_price, new_price = _prices(organization, current, new)
        now = self.engine.clock.now()
        usage = await self.engine.usage(session, organization)
        if timing is Timing.AUTO:
            upgrade = new_price.amount_minor >= current_price.amount_minor
            timing = Timing.NOW if upgrade else Timing.PERIOD_END
        warnings: tuple[str, ...] = ()
        if timing is Timing.NOW:
            proration = prorate(current_price, new_price, usage.period, now)
            effective_at = now
            if ask_provider:
                proration, warnings = await self._provider_figures(
                    session, organization, current, new, usage.period, proration
                )
        else:
            proration = no_proration(new_price.currency, usage.period.end)
            effective_at = usage.period.end
        resources = _compare(usage, new)
        return Preview(
            current,
            new,
            timing,
            effective_at,
            proration,
            resources,
            _blockers(resources),
            (*_warnings(resources, timing), *warnings),
        )

    async def _provider_figures(
        self,
        session: AsyncSession,
        organization: Organization,
        current: Plan,
        new: Plan,
        period: Period,
        proration: Proration,
    ) -> tuple[Proration, tuple[str, ...]]:
        """The provider's own preview of an immediate change when it has one (Stripe), else
        Tally's proration; a provider that cannot answer leaves Tally's, with a warning."""
        subscription = await repository.get_subscription(session, organization.id)
        if subscription is None:
            return proration, ()
        request = ChangeRequest(
            organization, subscription, current, new, Timing.NOW, period, proration, "preview"
        )
        try:
            figures = await self.provider.preview_change(session, request)
        except ProviderError as error:
            return proration, (f"the billing provider's preview is unavailable: {error.message}",)
        return (figures or proration), ()

    async def begin(
        self,
        session: AsyncSession,
        organization: Organization,
        plan_id: str,
        timing: Timing = Timing.AUTO,
        idempotency_key: str | None = None,
    ) -> Intent | Changed:
        """The first short transaction of a change: lock, validate and write the intent
        (`pending`, with its provider key derived from the idempotency key). A change
        already made under the key is answered as it was; one left pending (or refused) is
        resumed under the same provider key, so the provider replays its answer."""
        key = idempotency_key or new_id()
        earlier = await ledger_repository.find_plan_change(session, organization.id, key)
        if earlier is not None:
            if earlier.to_plan_id != plan_id:
                raise Conflict(
                    ErrorCode.IDEMPOTENCY_KEY_REUSED,
                    f"this idempotency key was used for a change to {earlier.to_plan_id!r}",
                    field="idempotency_key",
                )
            if earlier.status not in ("pending", "failed"):
                return await self._replay(session, earlier)
            subscription = await self._subscription(session, organization)
            earlier.status = "pending"
            await repository.add(session, earlier)
            return Intent(earlier, self.request(organization, subscription, earlier))
        subscription = await self._subscription(session, organization)
        await close_due_periods(
            session,
            self.engine,
            self.catalog,
            self.provider,
            organization,
            subscription,
            self.engine.clock.now(),
        )
        preview = await self.preview(session, organization, plan_id, timing, ask_provider=False)
        if preview.blockers:
            raise PlanChangeBlocked(preview.blockers)
        change = PlanChange(
            organization_id=organization.id,
            idempotency_key=key,
            from_plan_id=preview.current.id,
            to_plan_id=preview.new.id,
            timing=preview.timing.value,
            made_at=self.engine.clock.now(),
            effective_at=preview.effective_at,
            status="pending",
            provider_key=provider_key(organization.id, key),
        )
        await repository.add(session, change)
        return Intent(change, self.request(organization, subscription, change))

    async def _subscription(
        self, session: AsyncSession, organization: Organization
    ) -> Subscription:
        subscription = await repository.lock_subscription(session, organization.id)
        if subscription is None:
            raise InvalidInput(
                ErrorCode.NO_SUBSCRIPTION, "the organization has no subscription", field="plan_id"
            )
        return subscription

    def request(
        self, organization: Organization, subscription: Subscription, change: PlanChange
    ) -> ChangeRequest:
        """The provider's view of a change written as `change` (the same on every retry)."""
        current, new = self.catalog.get(change.from_plan_id), self.catalog.get(change.to_plan_id)
        timing = Timing(change.timing)
        period = self.engine.period(organization, change.made_at)
        current_price, new_price = _prices(organization, current, new)
        if timing is Timing.NOW:
            proration = prorate(current_price, new_price, period, change.effective_at)
        else:
            proration = no_proration(new_price.currency, period.end)
        return ChangeRequest(
            organization,
            subscription,
            current,
            new,
            timing,
            period,
            proration,
            change.id,
            change.provider_key or provider_key(organization.id, change.idempotency_key),
        )

    async def finish(
        self,
        session: AsyncSession,
        organization: Organization,
        subscription: Subscription,
        change_id: str,
        pushed: PushedChange,
    ) -> Changed:
        """The second short transaction: apply a change the provider carried out (NOW: the
        plan in force from its instant, recorded in the plan history; PERIOD_END:
        scheduled), replacing any change scheduled before it. A change already applied (by a
        concurrent retry) is answered as it is."""
        change = await session.get(PlanChange, change_id, populate_existing=True)
        if change is None or change.organization_id != organization.id:
            raise NotFound.of("plan change")
        if change.status != "pending":
            return await self._replay(session, change)
        request = self.request(organization, subscription, change)
        invoice = await self.provider.apply_change(session, request, pushed)
        now = self.engine.clock.now()
        replaced = await ledger_repository.scheduled_change(session, organization.id)
        if replaced is not None:
            replaced.status, replaced.canceled_at = "canceled", now
            await repository.add(session, replaced)
        if request.timing is Timing.NOW:
            organization.plan_id = change.to_plan_id
            subscription.pending_plan_id = None
            change.status = "applied"
            await plan_history.record(
                session, organization.id, change.to_plan_id, change.effective_at, change.id
            )
        else:
            subscription.pending_plan_id = change.to_plan_id
            change.status = "scheduled"
        change.invoice_id = invoice.id if invoice else None
        await repository.add(session, organization, subscription, change)
        await audit.record(
            session,
            organization.id,
            "plan.changed" if change.status == "applied" else "plan.change_scheduled",
            at=now,
            subject=change.id,
            before={"plan_id": change.from_plan_id},
            after={"plan_id": change.to_plan_id, "effective_at": change.effective_at},
        )
        return Changed(change, invoice, False)

    async def fail(self, session: AsyncSession, change_id: str) -> None:
        """The provider refused the change: it is `failed` (a retry with its key may try
        again)."""
        change = await session.get(PlanChange, change_id, populate_existing=True)
        if change is not None and change.status == "pending":
            change.status = "failed"
            await repository.add(session, change)

    async def scheduled(self, session: AsyncSession, organization: Organization) -> PlanChange:
        """The change scheduled for the period's end; NOTHING_SCHEDULED when there is none."""
        change = await ledger_repository.scheduled_change(session, organization.id)
        if change is None:
            raise InvalidInput(
                ErrorCode.NOTHING_SCHEDULED, "no plan change is scheduled", field="plan_id"
            )
        return change

    async def cancel(
        self, session: AsyncSession, subscription: Subscription, change_id: str
    ) -> PlanChange:
        """Undo a scheduled change: `canceled`, nothing pending on the subscription."""
        change = await session.get(PlanChange, change_id, populate_existing=True)
        if change is None or change.status != "scheduled":
            raise InvalidInput(
                ErrorCode.NOTHING_SCHEDULED, "no plan change is scheduled", field="plan_id"
            )
        change.status, change.canceled_at = "canceled", self.engine.clock.now()
        subscription.pending_plan_id = None
        await repository.add(session, change, subscription)
        await audit.record(
            session,
            change.organization_id,
            "plan.change_canceled",
            at=change.canceled_at,
            subject=change.id,
            before={"pending_plan_id": change.to_plan_id},
            after={"pending_plan_id": None},
        )
        return change

    async def _replay(self, session: AsyncSession, earlier: PlanChange) -> Changed:
        invoice = None
        if earlier.invoice_id is not None:
            invoice = await repository.get_invoice(
                session, earlier.organization_id, earlier.invoice_id
            )
        return Changed(earlier, invoice, True)


def provider_key(organization_id: str, idempotency_key: str) -> str:
    """The provider's idempotency key of a change: derived from the client's key, so every
    retry reaches the same provider change."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"tally-change-{organization_id}-{digest}"


def _compare(usage: UsageSnapshot, new: Plan) -> tuple[ResourceComparison, ...]:
    return tuple(
        ResourceComparison(
            meter, new.limit(meter.resource.key) or Limit(meter.resource.default_limit)
        )
        for meter in usage.resources
    )


def _blockers(resources: tuple[ResourceComparison, ...]) -> tuple[Blocker, ...]:
    blockers = []
    for item in resources:
        limit = item.new_limit.value
        if item.fits or item.meter.resource.resets or limit is None:
            continue
        resource, used = item.meter.resource, item.meter.used
        unit = resource.unit
        blockers.append(
            Blocker(
                resource.key,
                used,
                limit,
                f"{used:,} {unit} in use, the plan allows {limit:,}: "
                f"remove {used - limit:,} {unit}",
            )
        )
    return tuple(blockers)


def _warnings(resources: tuple[ResourceComparison, ...], timing: Timing) -> tuple[str, ...]:
    warnings = []
    for item in resources:
        limit = item.new_limit.value
        if item.fits or not item.meter.resource.resets or limit is None:
            continue
        label = item.meter.resource.label
        if timing is Timing.NOW:
            warnings.append(
                f"{label}: {format_amount(item.meter.used)} used this period, above the new "
                f"plan's {format_amount(limit)}; more will be refused until the period resets"
            )
        else:
            warnings.append(
                f"{label}: {format_amount(item.meter.used)} used this period; the new plan "
                f"allows {format_amount(limit)} per period"
            )
    return tuple(warnings)


def _prices(organization: Organization, current: Plan, new: Plan) -> tuple[Money, Money]:
    """Both plans' prices in the organization's currency; CurrencyNotOffered
    (CURRENCY_NOT_OFFERED, naming the currencies offered) when a plan has none in it."""
    return current.price(organization.currency), new.price(organization.currency)
