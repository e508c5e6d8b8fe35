"""GraphQL types of the money side: plans, prices, subscription, invoices."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from enum import Enum

import strawberry

import billing
from billing.models import Invoice as InvoiceRow
from billing.subscriptions import SubscriptionView
from graph.errors import bad_input
from graph.scalars import BigInt
from limits import Policy


@strawberry.enum(description="What happens at the limit.")
class LimitPolicy(Enum):
    HARD = "hard"
    SOFT = "soft"
    OVERAGE = "overage"


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
    policy: LimitPolicy


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
                    policy=LimitPolicy(plan.policies.get(key, Policy.HARD).value),
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
    def of(cls, row: InvoiceRow) -> Invoice:
        return cls(
            id=strawberry.ID(row.id),
            number=row.number,
            date=row.issued_on,
            amount=Money.of(billing.Money(row.total_minor, row.currency)),
            status=row.status,
            pdf_url=row.pdf_url,
            hosted_url=row.hosted_url,
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


def invoice_cursor(row: InvoiceRow) -> str:
    return base64.urlsafe_b64encode(f"{row.issued_on.isoformat()}|{row.id}".encode()).decode()


def parse_invoice_cursor(cursor: str) -> tuple[dt.date, str]:
    try:
        issued_on, invoice_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return dt.date.fromisoformat(issued_on), invoice_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_input(f"invalid cursor {cursor!r}") from None
