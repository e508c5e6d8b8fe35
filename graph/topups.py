"""GraphQL of top-ups and the spend cap: the packs on sale and the cap on the Organization
page, `purchaseTopUp` and `setSpendCap`."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry import Parent

import billing
from billing.models import TopUpPurchase as TopUpPurchaseRow
from billing.spend_cap import SpendCapStatus
from core.orgs import Organization as OrganizationRow
from graph.billing import Money
from graph.errors import InvalidInputError, NotFoundError, ProviderFailedError
from graph.permissions import BillingRoles, Info, mutation, target
from graph.scalars import BigInt


@strawberry.type(description="A top-up pack on sale, priced in the organization's currency.")
class TopUpOffer:
    id: strawberry.ID
    name: str
    resource: str
    amount: BigInt
    price: Money | None = strawberry.field(
        description="null when the pack is not sold in the organization's currency."
    )


@strawberry.type(description="A top-up pack bought: its allowance is granted once DONE.")
class TopUpPurchase:
    id: strawberry.ID
    top_up_id: str
    resource: str
    amount: BigInt
    price: Money
    status: str = strawberry.field(description="pending while being charged, then done.")
    invoice_id: strawberry.ID | None

    @classmethod
    def of(cls, row: TopUpPurchaseRow, locale: str) -> TopUpPurchase:
        return cls(
            id=strawberry.ID(row.id),
            top_up_id=row.topup_id,
            resource=row.resource,
            amount=BigInt(row.amount),
            price=Money.of(billing.Money(row.price_minor, row.currency), locale),
            status=row.status,
            invoice_id=strawberry.ID(row.invoice_id) if row.invoice_id else None,
        )


@strawberry.type(description="The most overage may cost per period, and what it cost so far.")
class SpendCap:
    cap: Money | None = strawberry.field(description="null: no cap.")
    spent: Money = strawberry.field(description="This period's overage so far (excl. VAT).")

    @classmethod
    def of(cls, status: SpendCapStatus, locale: str) -> SpendCap:
        cap = Money.of(status.cap, locale) if status.cap is not None else None
        return cls(cap=cap, spent=Money.of(status.spent, locale))


async def _top_ups(root: Parent[OrganizationRow], info: Info) -> list[TopUpOffer]:
    offers = []
    for topup in info.context.services.catalog.topups.values():
        price = topup.prices.get(root.currency)
        offers.append(
            TopUpOffer(
                id=strawberry.ID(topup.id),
                name=topup.name,
                resource=topup.resource,
                amount=BigInt(topup.amount),
                price=Money.of(price, root.locale) if price is not None else None,
            )
        )
    return offers


async def _spend_cap(root: Parent[OrganizationRow], info: Info) -> SpendCap:
    return SpendCap.of(await info.context.services.spend_caps.status(root), root.locale)


def organization_fields() -> dict[str, Any]:
    """The top-up and spend cap side of `Organization`."""
    return {
        "top_ups": strawberry.field(resolver=_top_ups, description="Top-up packs on sale."),
        "spend_cap": strawberry.field(
            resolver=_spend_cap,
            description="The spend cap on overage and what overage cost this period.",
        ),
    }


@strawberry.type(description="A top-up bought (or found bought already with this key).")
class TopUpPurchased:
    purchase: TopUpPurchase


PurchaseTopUpResult = Annotated[
    TopUpPurchased | NotFoundError | InvalidInputError | ProviderFailedError,
    strawberry.union("PurchaseTopUpResult"),
]


async def purchase_top_up(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    top_up_id: str,
    idempotency_key: str,
) -> PurchaseTopUpResult:
    organization = await target(info, organization_id)
    row = await info.context.services.topups.purchase(organization, top_up_id, idempotency_key)
    return TopUpPurchased(purchase=TopUpPurchase.of(row, organization.locale))


@strawberry.type(description="The spend cap as now set.")
class SpendCapSet:
    spend_cap: SpendCap


SetSpendCapResult = Annotated[
    SpendCapSet | InvalidInputError | NotFoundError,
    strawberry.union("SetSpendCapResult"),
]


async def set_spend_cap(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    amount_minor: BigInt | None,
) -> SetSpendCapResult:
    organization = await target(info, organization_id)
    amount = None if amount_minor is None else int(amount_minor)
    status = await info.context.services.spend_caps.set(organization, amount)
    return SpendCapSet(spend_cap=SpendCap.of(status, organization.locale))


@strawberry.type(description="Mutations of top-ups and the spend cap.")
class TopUpMutation:
    purchase_top_up = mutation(
        purchase_top_up,
        description="Buy a top-up pack now (charged at once, in the organization's currency): "
        "its allowance is added past the plan's limit until used up, across periods. The same "
        "idempotencyKey answers the same purchase.",
        permission=BillingRoles,
    )
    set_spend_cap = mutation(
        set_spend_cap,
        description="Cap what overage may cost per period (amountMinor, in minor units of the "
        "organization's currency; null clears it): overage past it is refused with "
        "SPEND_CAP_REACHED. Only on a plan that bills overage.",
        permission=BillingRoles,
    )
