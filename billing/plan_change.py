"""Changing plan: the preview (proration, per-resource comparison, blockers) and the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger_repository, repository
from billing.catalog import Catalog, Plan
from billing.closing import close_due_periods
from billing.models import Invoice, PlanChange, Subscription
from billing.proration import Proration, no_proration, prorate
from billing.provider import BillingProvider, ChangeRequest, ProviderError, Timing
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
class Changed:
    """A change applied (NOW) or scheduled (PERIOD_END), and its invoice if one was issued."""

    plan_change: PlanChange
    invoice: Invoice | None
    replayed: bool


class PlanChanger:
    """Previews and applies plan changes through the billing provider, all or nothing."""

    def __init__(self, catalog: Catalog, engine: LimitEngine, provider: BillingProvider) -> None:
        self.catalog = catalog
        self.engine = engine
        self.provider = provider

    def plan(self, plan_id: str) -> Plan:
        plan = self.catalog.find(plan_id)
        if plan is None:
            raise NotFound(ErrorCode.PLAN_NOT_FOUND, f"there is no plan {plan_id!r}")
        return plan

    async def preview(
        self,
        session: AsyncSession,
        organization: Organization,
        plan_id: str,
        timing: Timing = Timing.AUTO,
    ) -> Preview:
        current, new = self.catalog.get(organization.plan_id), self.plan(plan_id)
        if new.id == current.id:
            raise InvalidInput(
                ErrorCode.SAME_PLAN, f"the organization is already on {new.name}", field="plan_id"
            )
        now = self.engine.clock.now()
        usage = await self.engine.usage(session, organization)
        if timing is Timing.AUTO:
            upgrade = new.price_monthly.amount_minor >= current.price_monthly.amount_minor
            timing = Timing.NOW if upgrade else Timing.PERIOD_END
        warnings: tuple[str, ...] = ()
        if timing is Timing.NOW:
            proration = prorate(current.price_monthly, new.price_monthly, usage.period, now)
            effective_at = now
            proration, warnings = await self._provider_figures(
                session, organization, current, new, usage.period, proration
            )
        else:
            proration = no_proration(new.price_monthly.currency, usage.period.end)
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

    async def change(
        self,
        session: AsyncSession,
        organization: Organization,
        plan_id: str,
        timing: Timing = Timing.AUTO,
        idempotency_key: str | None = None,
    ) -> Changed:
        """Apply or schedule a change in the caller's transaction; the provider is asked
        first, so when it fails (ProviderError) the caller rolls back and nothing changed."""
        key = idempotency_key or new_id()
        earlier = await ledger_repository.find_plan_change(session, organization.id, key)
        if earlier is not None:
            return await self._replay(session, earlier, plan_id)
        subscription = await repository.lock_subscription(session, organization.id)
        if subscription is None:
            raise InvalidInput(
                ErrorCode.NO_SUBSCRIPTION, "the organization has no subscription", field="plan_id"
            )
        await close_due_periods(
            session,
            self.engine,
            self.catalog,
            self.provider,
            organization,
            subscription,
            self.engine.clock.now(),
        )
        preview = await self.preview(session, organization, plan_id, timing)
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
        )
        request = ChangeRequest(
            organization,
            subscription,
            preview.current,
            preview.new,
            preview.timing,
            self.engine.period(organization),
            preview.proration,
            change.id,
        )
        invoice = await self.provider.apply_change(session, request)
        _apply(organization, subscription, preview)
        change.invoice_id = invoice.id if invoice else None
        await repository.add(session, organization, subscription, change)
        return Changed(change, invoice, False)

    async def _replay(self, session: AsyncSession, earlier: PlanChange, plan_id: str) -> Changed:
        if earlier.to_plan_id != plan_id:
            raise Conflict(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                f"this idempotency key was used for a change to {earlier.to_plan_id!r}",
                field="idempotency_key",
            )
        invoice = None
        if earlier.invoice_id is not None:
            invoice = await repository.get_invoice(
                session, earlier.organization_id, earlier.invoice_id
            )
        return Changed(earlier, invoice, True)


def _apply(organization: Organization, subscription: Subscription, preview: Preview) -> None:
    if preview.timing is Timing.NOW:
        subscription.period_plan_id = subscription.period_plan_id or organization.plan_id
        organization.plan_id = preview.new.id
        subscription.pending_plan_id = None
    else:
        subscription.pending_plan_id = preview.new.id


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
