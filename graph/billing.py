"""GraphQL types of the money side: plans, prices, subscription, invoices."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry import Parent

import billing
from billing.models import Invoice as InvoiceRow
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
    formatted: str = strawberry.field(description='As the page shows it, e.g. "€1,890.00".')

    @classmethod
    def of(cls, money: billing.Money) -> Money:
        return cls(
            amount_minor=money.amount_minor, currency=money.currency, formatted=money.formatted
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
    price_monthly: Money
    limits: list[PlanLimit]

    @classmethod
    def of(cls, plan: billing.Plan) -> Plan:
        return cls(
            id=strawberry.ID(plan.id),
            name=plan.name,
            price_monthly=Money.of(plan.price_monthly),
            limits=[
                PlanLimit(
                    resource=key,
                    limit=BigInt(value) if value is not None else None,
                    policy=plan.policies.get(key, Policy.HARD),
                )
                for key, value in plan.limits.items()
            ],
        )


@strawberry.type(description="The organization's subscription and its current billing period.")
class PlanSubscription:
    status: str
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    resets_on: dt.date
    pending_plan: Plan | None
    cancel_at_period_end: bool

    @classmethod
    def of(cls, view: SubscriptionView) -> PlanSubscription:
        return cls(
            status=view.status,
            current_period_start=view.current_period_start,
            current_period_end=view.current_period_end,
            resets_on=view.resets_on,
            pending_plan=Plan.of(view.pending_plan) if view.pending_plan else None,
            cancel_at_period_end=view.cancel_at_period_end,
        )


@strawberry.type(description="An invoice; amounts include tax.")
class Invoice:
    id: strawberry.ID
    number: str
    date: dt.date
    amount: Money
    status: str
    pdf_url: str | None
    hosted_url: str | None
    period_start: dt.date | None
    period_end: dt.date | None

    @classmethod
    def of(cls, row: InvoiceRow, pdf_url: str | None, hosted_url: str | None) -> Invoice:
        return cls(
            id=strawberry.ID(row.id),
            number=row.number,
            date=row.issued_on,
            amount=Money.of(billing.Money(row.total_minor, row.currency)),
            status=row.status,
            pdf_url=pdf_url,
            hosted_url=hosted_url,
            period_start=row.period_start,
            period_end=row.period_end,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="Invoices, newest first.")
class InvoiceConnection:
    nodes: list[Invoice]
    page_info: PageInfo


async def invoice_node(row: InvoiceRow, info: Info) -> Invoice:
    """An invoice with its links: signed links to Tally's own documents for a local invoice
    (absolute, on the host the request came to), the provider's for a mirrored one."""
    if row.document is None:
        return Invoice.of(row, row.pdf_url, row.hosted_url)
    links = info.context.services.links
    base = str(info.context.request.base_url).rstrip("/")
    pdf = await links.url(row.organization_id, row.id, "pdf")
    html = await links.url(row.organization_id, row.id, "html")
    return Invoice.of(row, base + pdf, base + html)


async def _plan(root: Parent[OrganizationRow], info: Info) -> Plan:
    return Plan.of((await info.context.loaders.subscription.load(root.id)).plan)


async def _subscription(root: Parent[OrganizationRow], info: Info) -> PlanSubscription:
    return PlanSubscription.of(await info.context.loaders.subscription.load(root.id))


async def _invoices(
    root: Parent[OrganizationRow], info: Info, first: int | None = 10, after: str | None = None
) -> InvoiceConnection:
    page = await info.context.services.billing.invoices(
        root.id, 10 if first is None else first, after
    )
    return InvoiceConnection(
        nodes=[await invoice_node(row, info) for row in page.invoices],
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


@strawberry.type(description="A plan that fits the usage with headroom, or the current plan.")
class PlanRecommendation:
    plan: Plan
    current: bool
    fits: bool
    recommended: bool = strawberry.field(description="The cheapest plan that fits.")
    reasons: list[RecommendationReason]

    @classmethod
    def of(cls, item: Recommendation) -> PlanRecommendation:
        return cls(
            plan=Plan.of(item.plan),
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
                )
                for reason in item.reasons
            ],
        )


async def _recommendations(root: Parent[OrganizationRow], info: Info) -> list[PlanRecommendation]:
    usage = await info.context.loaders.usage.load(root.id)
    ranked = info.context.services.billing.recommendations(root, usage)
    return [PlanRecommendation.of(item) for item in ranked]


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
