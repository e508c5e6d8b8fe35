"""GraphQL types of the money side: plans, prices, subscription, invoices."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry
from strawberry import Parent

import billing
from billing.dunning import SubscriptionStatus
from billing.invoices import shown_status
from billing.models import Invoice as InvoiceRow
from billing.money import DEFAULT_LOCALE
from billing.recommend import Recommendation
from billing.subscriptions import SubscriptionView
from core.orgs import Organization as OrganizationRow
from graph.permissions import Info
from graph.scalars import BigInt
from graph.settings import organization_settings
from limits import Policy


@strawberry.type(description="An amount of money in minor units (cents) and its currency.")
class Money:
    amount_minor: int
    currency: str
    formatted: str = strawberry.field(
        description='As the page shows it in the organization\'s locale, e.g. "€1,890.00" (en).'
    )

    @classmethod
    def of(cls, money: billing.Money, locale: str = DEFAULT_LOCALE) -> Money:
        """The GraphQL view of `money`, formatted by Babel for `locale`."""
        return cls(
            amount_minor=money.amount_minor,
            currency=money.currency,
            formatted=money.format(locale),
        )


@strawberry.type(description="A plan's limit on one resource; a null limit is unlimited.")
class PlanLimit:
    resource: str
    limit: BigInt | None
    policy: Policy


@strawberry.type(description="A plan on offer; prices exclude tax.")
class Plan:
    id: strawberry.ID
    name: str
    price_monthly: Money = strawberry.field(
        description="In the organization's currency (the plan's default one where it has none)."
    )
    currencies: list[str] = strawberry.field(
        description="The currencies the plan is offered in (ISO 4217), its default first."
    )
    limits: list[PlanLimit]

    @classmethod
    def of(
        cls, plan: billing.Plan, currency: str | None = None, locale: str = DEFAULT_LOCALE
    ) -> Plan:
        """The plan priced in `currency` when it is offered in it, else in its default one."""
        price = plan.price(currency) if currency and plan.offers(currency) else plan.price_monthly
        return cls(
            id=strawberry.ID(plan.id),
            name=plan.name,
            price_monthly=Money.of(price, locale),
            currencies=list(plan.currencies),
            limits=[
                PlanLimit(
                    resource=key,
                    limit=BigInt(value) if value is not None else None,
                    policy=plan.policies.get(key, Policy.HARD),
                )
                for key, value in plan.limits.items()
            ],
        )


@strawberry.type(description="A late payment: what to pay by when before metered usage is refused.")
class PaymentIssue:
    past_due_since: dt.datetime = strawberry.field(description="When the payment first failed.")
    usage_stops_at: dt.datetime = strawberry.field(
        description="From then on metered usage is refused (SUBSCRIPTION_INACTIVE) until paid."
    )
    message: str = strawberry.field(description="What to do and by when, for the page.")


@strawberry.type(description="The organization's subscription and its current billing period.")
class PlanSubscription:
    status: SubscriptionStatus
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    resets_on: dt.date
    pending_plan: Plan | None
    cancel_at_period_end: bool
    trial_ends_on: dt.date | None = strawberry.field(
        description="The day the trial ends (UTC) while the subscription is TRIALING."
    )
    payment_issue: PaymentIssue | None = strawberry.field(
        description="Set while a payment is late (PAST_DUE, UNPAID)."
    )
    usage_suspended: bool = strawberry.field(
        description="True once metered usage is refused (unpaid after the grace period, or "
        "canceled); the page and billing keep working so the customer can pay."
    )

    @classmethod
    def of(
        cls, view: SubscriptionView, currency: str | None = None, locale: str = DEFAULT_LOCALE
    ) -> PlanSubscription:
        trial = view.trial_ends_at if view.status is SubscriptionStatus.TRIALING else None
        issue = view.payment_issue
        return cls(
            status=view.status,
            current_period_start=view.current_period_start,
            current_period_end=view.current_period_end,
            resets_on=view.resets_on,
            pending_plan=Plan.of(view.pending_plan, currency, locale)
            if view.pending_plan
            else None,
            cancel_at_period_end=view.cancel_at_period_end,
            trial_ends_on=trial.date() if trial else None,
            payment_issue=PaymentIssue(
                past_due_since=issue.past_due_since,
                usage_stops_at=issue.usage_stops_at,
                message=view.payment_message or "",
            )
            if issue
            else None,
            usage_suspended=view.usage_suspended,
        )


@strawberry.type(description="An invoice or a credit note; amounts include tax.")
class Invoice:
    id: strawberry.ID
    number: str
    date: dt.date
    amount: Money = strawberry.field(description="Negative for a credit note.")
    status: str = strawberry.field(
        description="open, overdue (open past its due date), paid, void, uncollectible; "
        "issued for a credit note."
    )
    pdf_url: str | None
    hosted_url: str | None
    period_start: dt.date | None = strawberry.field(description="The first day of service.")
    period_end: dt.date | None = strawberry.field(description="The last day of service (included).")
    kind: str = strawberry.field(description="invoice, or credit_note.")
    due_on: dt.date | None = strawberry.field(description="Payment due by this day.")
    paid_at: dt.datetime | None
    credited_invoice_id: strawberry.ID | None = strawberry.field(
        description="The invoice a credit note reverses."
    )

    @classmethod
    def of(
        cls,
        row: InvoiceRow,
        pdf_url: str | None,
        hosted_url: str | None,
        today: dt.date,
        locale: str = DEFAULT_LOCALE,
    ) -> Invoice:
        return cls(
            id=strawberry.ID(row.id),
            number=row.number,
            date=row.issued_on,
            amount=Money.of(billing.Money(row.total_minor, row.currency), locale),
            status=shown_status(row, today),
            pdf_url=pdf_url,
            hosted_url=hosted_url,
            period_start=row.period_start,
            period_end=row.period_end,
            kind=row.kind,
            due_on=row.due_on,
            paid_at=row.paid_at,
            credited_invoice_id=strawberry.ID(row.credited_invoice_id)
            if row.credited_invoice_id
            else None,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="Invoices, newest first.")
class InvoiceConnection:
    nodes: list[Invoice]
    page_info: PageInfo


async def invoice_node(row: InvoiceRow, info: Info, locale: str = DEFAULT_LOCALE) -> Invoice:
    """An invoice with its links: signed links to Tally's own documents for a local invoice
    (absolute, on TALLY_PUBLIC_URL), the provider's for a mirrored one."""
    today = info.context.services.billing.clock.now().date()
    if row.document is None:
        return Invoice.of(row, row.pdf_url, row.hosted_url, today, locale)
    links = info.context.services.links
    pdf = await links.url(row.organization_id, row.id, "pdf")
    html = await links.url(row.organization_id, row.id, "html")
    return Invoice.of(row, pdf, html, today, locale)


async def _plan(root: Parent[OrganizationRow], info: Info) -> Plan:
    view = await info.context.loaders.subscription.load(root.id)
    return Plan.of(view.plan, root.currency, root.locale)


async def _subscription(root: Parent[OrganizationRow], info: Info) -> PlanSubscription:
    view = await info.context.loaders.subscription.load(root.id)
    return PlanSubscription.of(view, root.currency, root.locale)


async def _invoices(
    root: Parent[OrganizationRow],
    info: Info,
    first: Annotated[
        int | None, strawberry.argument(description="Invoices per page: 1 to 100 (default 10).")
    ] = 10,
    after: Annotated[
        str | None, strawberry.argument(description="The `endCursor` of the previous page.")
    ] = None,
) -> InvoiceConnection:
    page = await info.context.services.billing.invoices(
        root.id, 10 if first is None else first, after
    )
    return InvoiceConnection(
        nodes=[await invoice_node(row, info, root.locale) for row in page.invoices],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )


@strawberry.type(description="How one resource fares on a plan.")
class RecommendationReason:
    resource: str
    projected: BigInt = strawberry.field(
        description="Metered: projected to the period's end from the burn rate; gauge: in use."
    )
    limit: BigInt | None
    fits: bool
    message: str = strawberry.field(description='e.g. "tokens: projected 230.0M of 500.0M"')
    included: bool = strawberry.field(
        description="False for a resource the plan does not offer (other plans list it): "
        "then it fits only while unused, and its limit is 0."
    )


@strawberry.type(description="A plan that fits the usage with headroom, or the current plan.")
class PlanRecommendation:
    plan: Plan
    current: bool
    fits: bool
    recommended: bool = strawberry.field(description="The cheapest plan that fits.")
    reasons: list[RecommendationReason]
    unlimited_resources: list[str] = strawberry.field(
        description="The organization's resources this plan leaves without a limit."
    )

    @classmethod
    def of(
        cls, item: Recommendation, currency: str | None = None, locale: str = DEFAULT_LOCALE
    ) -> PlanRecommendation:
        """The GraphQL view of a recommendation, its plan priced in `currency`."""
        return cls(
            plan=Plan.of(item.plan, currency, locale),
            unlimited_resources=list(item.unlimited_resources),
            current=item.current,
            fits=item.fits,
            recommended=item.recommended,
            reasons=[
                RecommendationReason(
                    resource=reason.resource,
                    projected=BigInt(reason.projected),
                    limit=BigInt(reason.limit) if reason.limit is not None else None,
                    fits=reason.fits,
                    message=reason.message,
                    included=reason.included,
                )
                for reason in item.reasons
            ],
        )


async def _recommendations(root: Parent[OrganizationRow], info: Info) -> list[PlanRecommendation]:
    usage = await info.context.loaders.usage.load(root.id)
    ranked = info.context.services.billing.recommendations(root, usage)
    return [PlanRecommendation.of(item, root.currency, root.locale) for item in ranked]


def organization_fields() -> dict[str, Any]:
    """The billing side of `Organization`."""
    return {
        "plan": strawberry.field(resolver=_plan),
        "subscription": strawberry.field(resolver=_subscription),
        "invoices": strawberry.field(resolver=_invoices, description="Newest first."),
        "settings": strawberry.field(resolver=organization_settings),
        "plan_recommendations": strawberry.field(
            resolver=_recommendations, description="Plans that fit, cheapest first."
        ),
    }
