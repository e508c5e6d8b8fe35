"""The embedded provider: Tally keeps its own ledger and issues its own invoices."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from billing.catalog import Catalog
from billing.invoicing import Invoicer
from billing.local.documents import InvoiceLine, format_date
from billing.models import Invoice, Subscription
from billing.money import minor_digits
from billing.proration import Proration, portion, remaining_fraction
from billing.provider import ChangeRequest, PeriodClose, PortalUnavailable
from core.orgs import Organization
from limits import LimitEngine, Period, Policy
from limits.display import format_amount


class LocalProvider:
    """Bills from Tally's own ledger: invoices at period close and for prorated changes,
    credit carried on the subscription; there is no payment collection and no portal."""

    name = "local"

    def __init__(self, invoicer: Invoicer, catalog: Catalog, engine: LimitEngine) -> None:
        self.invoicer = invoicer
        self.catalog = catalog
        self.engine = engine

    async def preview_change(
        self, session: AsyncSession, request: ChangeRequest
    ) -> Proration | None:
        return None

    async def apply_change(self, session: AsyncSession, request: ChangeRequest) -> Invoice | None:
        proration = request.proration
        request.subscription.credit_minor += proration.carried_credit.amount_minor
        if proration.amount_due.amount_minor == 0:
            return None
        end = request.period.end
        since = f"{format_date(proration.at.date())} to {format_date(end.date())}"
        lines = [
            InvoiceLine.of(
                f"{request.new.name} plan, {since} (prorated)", 1, proration.charge.amount_minor
            ),
            InvoiceLine.of(
                f"Unused time on {request.current.name} plan, {since}",
                1,
                -proration.credit.amount_minor,
            ),
        ]
        issued = await self.invoicer.issue(
            session,
            request.organization,
            source=f"change:{request.change_id}",
            issued_on=proration.at.date(),
            lines=lines,
            currency=proration.currency,
            period_start=proration.at.date(),
            period_end=last_day(request.period),
        )
        return issued.invoice

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        period, plan, subscription = close.period, close.plan, close.subscription
        start = max(period.start, subscription.started_at)
        charge = portion(plan.price_monthly, remaining_fraction(period, start))
        label = (
            f"{plan.name} plan, {format_date(period.start.date())} "
            f"to {format_date(last_day(period))}"
        )
        if start > period.start:
            label += f" (from {format_date(start.date())})"
        lines = [InvoiceLine.of(label, 1, charge.amount_minor)]
        lines += await self._overage_lines(session, close.organization, period)
        subtotal = sum(line.amount_minor for line in lines)
        applied = min(subscription.credit_minor, max(subtotal, 0))
        if applied:
            lines.append(InvoiceLine.of("Credit balance applied", 1, -applied))
            subscription.credit_minor -= applied
        issued = await self.invoicer.issue(
            session,
            close.organization,
            source=f"period:{period.start.date().isoformat()}",
            issued_on=period.end.date(),
            lines=lines,
            currency=plan.price_monthly.currency,
            period_start=period.start.date(),
            period_end=last_day(period),
        )
        return issued.invoice

    async def _overage_lines(
        self, session: AsyncSession, organization: Organization, period: Period
    ) -> list[InvoiceLine]:
        plan = self.catalog.get(organization.plan_id)
        usage = await self.engine.usage(session, organization, at=period.start)
        lines = []
        for meter in usage.resources:
            limit, key = meter.limit, meter.resource.key
            price = plan.overage_price(key)
            if (
                not meter.resource.resets
                or limit.policy is not Policy.OVERAGE
                or limit.value is None
                or price is None
                or meter.used <= limit.value
            ):
                continue
            excess = meter.used - limit.value
            currency = plan.price_monthly.currency
            amount = (excess * price).scaleb(minor_digits(currency))
            minor = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            description = (
                f"{meter.resource.label} over the plan's {format_amount(limit.value)}: "
                f"{excess:,} {meter.resource.unit} at {price:f} {currency}"
            )
            lines.append(InvoiceLine.of(description, 1, minor))
        return lines

    async def portal_url(
        self,
        session: AsyncSession,
        organization: Organization,
        subscription: Subscription,
        return_url: str,
    ) -> str:
        raise PortalUnavailable(
            "the billing portal needs the Stripe provider (TALLY_BILLING=stripe); with local "
            "billing, edit the organization settings and download invoices from this page"
        )


def last_day(period: Period) -> date:
    """The period's last day (its end is excluded)."""
    return (period.end - timedelta(microseconds=1)).date()
