"""Top-ups: packs of a metered resource bought at once, raising the organization's allowance
until used up (it survives period resets; the limit engine draws on it past the plan's limit).

A purchase is written first (pending, unique idempotency key), charged at the provider outside
any transaction (the provider's idempotency keyed by the purchase), then recorded in a second
short transaction: the invoice issued or mirrored, the allowance granted, the purchase done. A
replay with the same key answers the same purchase and completes a pending one.
"""

from __future__ import annotations

from collections.abc import Iterable

from billing import repository, topup_repository
from billing.catalog import Catalog, CatalogError, TopUp
from billing.models import TopUpPurchase
from billing.money import Money
from billing.provider import BillingProvider, Charge
from core import audit
from core.clock import Clock
from core.db import Database
from core.errors import Conflict, ErrorCode, InvalidInput, NotFound
from core.ids import new_id
from core.orgs import Organization
from limits import Resource
from limits import repository as limits_repository

DONE = "done"
PENDING = "pending"


class TopUpNotFound(NotFound):
    """No top-up pack with this id; the message lists the packs on sale."""

    def __init__(self, topup_id: str, catalog: Catalog) -> None:
        on_sale = ", ".join(catalog.topups) or "none"
        super().__init__(
            ErrorCode.TOPUP_NOT_FOUND, f"no top-up {topup_id!r}; top-ups on sale: {on_sale}"
        )


def check_topups(catalog: Catalog, resources: Iterable[Resource]) -> None:
    """Fail at start-up when a top-up adds to a resource that is not metered (a gauge never
    resets, so an allowance would mean nothing)."""
    kinds = {resource.key: resource for resource in resources}
    for topup in catalog.topups.values():
        resource = kinds.get(topup.resource)
        if resource is not None and not resource.resets:
            raise CatalogError(
                f"top-up {topup.id!r} adds to {topup.resource!r}, a gauge; only metered "
                "resources take top-ups"
            )


def description_of(topup: TopUp, resource: Resource) -> str:
    """The invoice line of a pack: its name and what it adds."""
    return f"Top-up {topup.name}: {topup.amount:,} {resource.unit}"


class TopUpService:
    """Sells top-up packs: `purchase` charges one and grants its allowance, exactly once."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        catalog: Catalog,
        provider: BillingProvider,
        resources: Iterable[Resource],
    ) -> None:
        self.db = db
        self.clock = clock
        self.catalog = catalog
        self.provider = provider
        self.resources = {resource.key: resource for resource in resources}

    def topup(self, topup_id: str) -> TopUp:
        """The pack `topup_id`; TOPUP_NOT_FOUND listing the packs on sale."""
        topup = self.catalog.topups.get(topup_id)
        if topup is None:
            raise TopUpNotFound(topup_id, self.catalog)
        return topup

    async def purchase(
        self, organization: Organization, topup_id: str, idempotency_key: str
    ) -> TopUpPurchase:
        """Buy the pack `topup_id` now, in the organization's currency; the same key answers
        the same purchase (completing it when a previous attempt stopped half-way)."""
        topup = self.topup(topup_id)
        if not idempotency_key or len(idempotency_key) > 200:
            raise InvalidInput(
                ErrorCode.MISSING_IDEMPOTENCY_KEY,
                "an idempotency key is required",
                field="idempotency_key",
            )
        price = topup.price(organization.currency)
        async with self.db.write() as session:
            subscription = await repository.get_subscription(session, organization.id)
            if subscription is None:
                raise NotFound(ErrorCode.NO_SUBSCRIPTION, "the organization has no subscription")
            await topup_repository.insert_purchase(
                session,
                {
                    "id": new_id(),
                    "organization_id": organization.id,
                    "topup_id": topup.id,
                    "resource": topup.resource,
                    "amount": topup.amount,
                    "price_minor": price.amount_minor,
                    "currency": price.currency,
                    "idempotency_key": idempotency_key,
                    "status": PENDING,
                    "purchased_at": self.clock.now(),
                },
            )
            intent = await topup_repository.find_purchase(session, organization.id, idempotency_key)
            assert intent is not None
        if intent.topup_id != topup.id:
            raise Conflict(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                f"idempotency key {idempotency_key!r} already bought top-up {intent.topup_id!r}",
            )
        if intent.status == DONE:
            return intent
        charge = Charge(
            organization,
            subscription,
            description_of(topup, self.resources[topup.resource]),
            Money(intent.price_minor, intent.currency),
            f"topup:{intent.id}",
        )
        charged = await self.provider.charge(charge)
        async with self.db.write() as session:
            purchase = await topup_repository.find_purchase(
                session, organization.id, idempotency_key, lock=True
            )
            assert purchase is not None
            if purchase.status == DONE:
                return purchase
            invoice = await self.provider.record_charge(session, charge, charged)
            await limits_repository.grant_allowance(
                session, organization.id, purchase.resource, purchase.amount, self.clock.now()
            )
            purchase.status = DONE
            purchase.provider_ref = charged.reference if charged is not None else None
            purchase.invoice_id = invoice.id if invoice is not None else None
            await repository.add(session, purchase)
            await audit.record(
                session,
                organization.id,
                "topup.purchased",
                at=self.clock.now(),
                subject=purchase.id,
                after={
                    "topup_id": purchase.topup_id,
                    "resource": purchase.resource,
                    "amount": purchase.amount,
                    "price_minor": purchase.price_minor,
                    "currency": purchase.currency,
                    "invoice_id": purchase.invoice_id,
                },
            )
        return purchase
