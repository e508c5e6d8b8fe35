"""Billing through Stripe: a customer and a subscription per organization from its opening,
prorated changes, the overage of each closed period as invoice items.

No call is made under a database lock: the methods that talk to Stripe take no session, and
the callers run them between two short transactions (the intent written first, the result
applied after). Every call has a timeout and bounded retries, which are safe because every
write carries an idempotency key derived from what it does (the organization, the client's
key, the period and resource), never a random one. Stripe's invoices are mirrored by the
webhook handlers (billing/stripe/events.py) and, for a change, right after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger_repository, repository
from billing.catalog import Catalog, Plan
from billing.local.documents import format_period
from billing.models import Invoice, OverageReport, Subscription
from billing.money import Money
from billing.overage import overage_lines
from billing.proration import Proration
from billing.provider import (
    ChangeRequest,
    Charge,
    Charged,
    Opening,
    PeriodClose,
    ProviderError,
    ProviderRefs,
    PushedChange,
    Timing,
)
from billing.stripe.events import (
    ORGANIZATION_KEY,
    PENDING_FROM_KEY,
    PENDING_PLAN_KEY,
    PLAN_KEY,
    mirror_invoice,
)
from core.db import Database
from core.orgs import Organization
from limits import LimitEngine

T = TypeVar("T")
_INSTANT = timedelta(microseconds=1)

TIMEOUT_SECONDS = 5
"""The longest one request to Stripe may take (connect and read)."""
NETWORK_RETRIES = 2
"""Retries of a request that failed on the network or with a 409/5xx: safe, every write
carries an idempotency key."""
PERIOD_KEY = "tally_period"
RESOURCE_KEY = "tally_resource"


def overage_key(organization_id: str, period_start: datetime, resource: str) -> str:
    """The idempotency key of a period's overage invoice item for one resource."""
    return f"tally-overage-{organization_id}-{period_start.date().isoformat()}-{resource}"


class StripeProvider:
    """Carries out billing in Stripe. `price_field` names the subscription item's price
    parameter: "price" for Stripe, "plan" for servers that only know Plans (localstripe).
    `http_client` replaces the default one (requests, TIMEOUT_SECONDS)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        catalog: Catalog,
        engine: LimitEngine,
        *,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        price_field: str = "price",
        max_network_retries: int = NETWORK_RETRIES,
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=max_network_retries,
            http_client=http_client or stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
        )
        self.catalog = catalog
        self.engine = engine
        self.clock = engine.clock
        self.price_field = price_field

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
        except stripe.StripeError as error:
            message = error.user_message or str(error) or type(error).__name__
            raise ProviderError(f"Stripe: {message}") from error

    def _price(self, plan: Plan) -> str:
        if not plan.stripe_price:
            raise ProviderError(f"plan {plan.id!r} has no stripe_price in the plans file")
        return plan.stripe_price

    @staticmethod
    def _reference(subscription: Subscription) -> str:
        if not subscription.subscription_ref:
            raise ProviderError(
                "the organization has no Stripe subscription yet: run `tally stripe-sync --apply`"
            )
        return subscription.subscription_ref

    @staticmethod
    def _customer(subscription: Subscription) -> str:
        if not subscription.customer_ref:
            raise ProviderError(
                "the organization has no Stripe customer yet: run `tally stripe-sync --apply`"
            )
        return subscription.customer_ref

    async def retrieve(self, kind: str, object_id: str) -> Mapping[str, Any]:
        """Stripe's current state of a subscription or an invoice (`kind` as in the object's
        `object` field), to order two events of the same second."""
        if kind == "subscription":
            subscription = await self._call(self.client.v1.subscriptions.retrieve, object_id)
            return subscription.to_dict()
        if kind == "invoice":
            invoice = await self._call(self.client.v1.invoices.retrieve, object_id)
            return invoice.to_dict()
        raise ProviderError(f"Stripe: cannot re-read a {kind}")

    async def create_customer(self, organization: Organization, email: str | None = None) -> str:
        """The organization's Stripe customer (one per organization: a retry gets the same)."""
        params: dict[str, Any] = {
            "name": organization.name,
            "metadata": {ORGANIZATION_KEY: organization.id},
        }
        if email:
            params["email"] = email
        customer = await self._call(
            self.client.v1.customers.create,
            params,
            {"idempotency_key": f"tally-customer-{organization.id}"},
        )
        return str(customer.id)

    async def open_subscription(self, opening: Opening) -> ProviderRefs:
        """The customer and the subscription on the plan's price, anchored to the
        organization's billing anchor (`billing_cycle_anchor` at the start of its first full
        period) with the partial period before it prorated, after the plan's trial if any."""
        organization, plan = opening.organization, opening.plan
        price = self._price(plan)
        customer = opening.customer_ref or await self.create_customer(organization)
        params: dict[str, Any] = {
            "customer": customer,
            "items": [{self.price_field: price}],
            "billing_cycle_anchor": int(opening.next_anchor.timestamp()),
            "proration_behavior": "create_prorations",
            "payment_behavior": "allow_incomplete",
            "metadata": {ORGANIZATION_KEY: organization.id, PLAN_KEY: plan.id},
        }
        if opening.trial_ends_at is not None:
            params["trial_end"] = int(opening.trial_ends_at.timestamp())
        created = await self._call(
            self.client.v1.subscriptions.create,
            params,
            {"idempotency_key": f"tally-subscription-{organization.id}"},
        )
        return ProviderRefs(customer, str(created.id), str(created.status))

    async def subscription_state(self, subscription: Subscription) -> Mapping[str, Any] | None:
        """Stripe's subscription of the organization as it stands, or None when it has none."""
        if not subscription.subscription_ref:
            return None
        return await self.retrieve("subscription", subscription.subscription_ref)

    async def preview_change(
        self, session: AsyncSession, request: ChangeRequest
    ) -> Proration | None:
        """Stripe's invoice preview of the change (`invoices.create_preview` with the new price
        and `proration_behavior=always_invoice` at the change's instant): its proration lines
        give the credit and the charge. None before the organization has a Stripe
        subscription, when Tally's proration applies."""
        reference = request.subscription.subscription_ref
        if request.timing is not Timing.NOW or not reference:
            return None
        current = await self._call(self.client.v1.subscriptions.retrieve, reference)
        item = current["items"]["data"][0]["id"]
        preview = await self._call(
            self.client.v1.invoices.create_preview,
            {
                "customer": request.subscription.customer_ref,
                "subscription": reference,
                "subscription_details": {
                    "items": [{"id": item, self.price_field: self._price(request.new)}],
                    "proration_behavior": "always_invoice",
                    "proration_date": int(request.proration.at.timestamp()),
                },
            },
        )
        amounts = [int(line["amount"]) for line in preview["lines"]["data"]]
        currency = str(preview["currency"]).upper()
        return Proration(
            request.proration.at,
            request.proration.fraction,
            credit=Money(-sum(a for a in amounts if a < 0), currency),
            charge=Money(sum(a for a in amounts if a > 0), currency),
        )

    async def push_change(self, request: ChangeRequest) -> PushedChange:
        """The subscription moved to the new price under the change's provider key (a retry
        is answered by Stripe's replay): invoiced at once for NOW, from the next invoice for
        PERIOD_END (the metadata keeps the current plan, names the pending one and the
        instant it takes effect, so a later event applies it without another call)."""
        reference = self._reference(request.subscription)
        current = await self._call(self.client.v1.subscriptions.retrieve, reference)
        item = current["items"]["data"][0]["id"]
        now = request.timing is Timing.NOW
        metadata = {
            PLAN_KEY: request.new.id if now else request.current.id,
            PENDING_PLAN_KEY: "" if now else request.new.id,
            PENDING_FROM_KEY: "" if now else str(int(request.period.end.timestamp())),
        }
        updated = await self._call(
            self.client.v1.subscriptions.update,
            reference,
            {
                "items": [{"id": item, self.price_field: self._price(request.new)}],
                "proration_behavior": "always_invoice" if now else "none",
                "metadata": metadata,
            },
            {"idempotency_key": request.provider_key},
        )
        latest = updated.latest_invoice
        if not now or not latest:
            return PushedChange()
        if isinstance(latest, str):
            latest = await self._call(self.client.v1.invoices.retrieve, latest)
        return PushedChange(latest.to_dict())

    async def apply_change(
        self, session: AsyncSession, request: ChangeRequest, pushed: PushedChange
    ) -> Invoice | None:
        if pushed.invoice is None:
            return None
        invoice, _ = await mirror_invoice(
            session, request.organization.id, pushed.invoice, self.clock.now(), self.clock
        )
        return invoice

    async def cancel_scheduled(self, subscription: Subscription, current: Plan, key: str) -> None:
        """Back to the current plan's price, nothing pending in the metadata."""
        reference = self._reference(subscription)
        remote = await self._call(self.client.v1.subscriptions.retrieve, reference)
        item = remote["items"]["data"][0]["id"]
        await self._call(
            self.client.v1.subscriptions.update,
            reference,
            {
                "items": [{"id": item, self.price_field: self._price(current)}],
                "proration_behavior": "none",
                "metadata": {PLAN_KEY: current.id, PENDING_PLAN_KEY: "", PENDING_FROM_KEY: ""},
            },
            {"idempotency_key": key},
        )

    async def set_cancel_at_period_end(
        self, subscription: Subscription, cancel: bool, key: str
    ) -> None:
        await self._call(
            self.client.v1.subscriptions.update,
            self._reference(subscription),
            {"cancel_at_period_end": cancel},
            {"idempotency_key": key},
        )

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        """Stripe invoices the subscription itself; the period's overage is written as
        OverageReport rows (once per organization, period and resource), sent by
        `send_pending` after the transaction."""
        usage = await self.engine.usage(session, close.organization, at=close.period.start)
        first, last = close.period.start.date(), (close.period.end - _INSTANT).date()
        for line in overage_lines(close.final_plan, usage, close.organization.currency):
            key = (close.organization.id, close.period.start, line.resource)
            if await session.get(OverageReport, key) is not None:
                continue
            report = OverageReport(
                organization_id=close.organization.id,
                period_start=close.period.start,
                resource=line.resource,
                quantity=line.quantity,
                amount_minor=line.amount.amount_minor,
                currency=line.amount.currency,
                description=f"{line.description}, {format_period(first, last)}",
                created_at=self.clock.now(),
            )
            await repository.add(session, report)
        return None

    async def send_pending(self, db: Database, organization_id: str) -> None:
        """Each pending overage report as an invoice item on the subscription's next invoice
        (idempotency key `tally-overage-<org>-<period>-<resource>`), then marked sent."""
        async with db.read() as session:
            subscription = await repository.get_subscription(session, organization_id)
            reports = await ledger_repository.pending_overage_reports(session, organization_id)
        if not reports or subscription is None or not subscription.subscription_ref:
            return
        for report in reports:
            item = await self._call(
                self.client.v1.invoice_items.create,
                {
                    "customer": subscription.customer_ref,
                    "subscription": subscription.subscription_ref,
                    "amount": report.amount_minor,
                    "currency": report.currency.lower(),
                    "description": report.description,
                    "metadata": {
                        ORGANIZATION_KEY: organization_id,
                        PERIOD_KEY: report.period_start.date().isoformat(),
                        RESOURCE_KEY: report.resource,
                    },
                },
                {
                    "idempotency_key": overage_key(
                        organization_id, report.period_start, report.resource
                    )
                },
            )
            async with db.write() as session:
                row = await session.get(
                    OverageReport, (organization_id, report.period_start, report.resource)
                )
                if row is not None and row.status == "pending":
                    row.status, row.provider_ref = "sent", str(item.id)
                    row.sent_at = self.clock.now()
                    await repository.add(session, row)

    async def checkout_url(self, subscription: Subscription, currency: str, return_url: str) -> str:
        """A Stripe Checkout session in `setup` mode: the customer adds a card."""
        session = await self._call(
            self.client.v1.checkout.sessions.create,
            {
                "mode": "setup",
                "customer": self._customer(subscription),
                "currency": currency.lower(),
                "success_url": return_url,
                "cancel_url": return_url,
            },
        )
        return str(session.url)

    async def portal_url(self, subscription: Subscription, return_url: str) -> str:
        portal = await self._call(
            self.client.v1.billing_portal.sessions.create,
            {"customer": self._customer(subscription), "return_url": return_url},
        )
        return str(portal.url)

    async def charge(self, charge: Charge) -> Charged | None:
        """A Stripe invoice of its own for a one-off charge (a top-up): created (pending items
        excluded), its item added, finalized and paid at once; every call keyed
        `tally-<source>-<step>`, so a retry bills once. Its id is the reference."""
        key = f"tally-{charge.source}"
        metadata = {ORGANIZATION_KEY: charge.organization.id, "tally_source": charge.source}
        customer = self._customer(charge.subscription)
        invoice = await self._call(
            self.client.v1.invoices.create,
            {
                "customer": customer,
                "currency": charge.amount.currency.lower(),
                "collection_method": "charge_automatically",
                "pending_invoice_items_behavior": "exclude",
                "auto_advance": False,
                "metadata": metadata,
            },
            {"idempotency_key": f"{key}-invoice"},
        )
        await self._call(
            self.client.v1.invoice_items.create,
            {
                "customer": customer,
                "invoice": invoice.id,
                "amount": charge.amount.amount_minor,
                "currency": charge.amount.currency.lower(),
                "description": charge.description,
                "metadata": metadata,
            },
            {"idempotency_key": f"{key}-item"},
        )
        await self._call(
            self.client.v1.invoices.finalize_invoice,
            invoice.id,
            {},
            {"idempotency_key": f"{key}-finalize"},
        )
        paid = await self._call(
            self.client.v1.invoices.pay, invoice.id, {}, {"idempotency_key": f"{key}-pay"}
        )
        return Charged(str(invoice.id), paid.to_dict())

    async def record_charge(
        self, session: AsyncSession, charge: Charge, charged: Charged | None
    ) -> Invoice | None:
        """The local mirror of the charge's Stripe invoice, as `charge` received it."""
        if charged is None:
            return None
        invoice, _ = await mirror_invoice(
            session, charge.organization.id, charged.invoice, self.clock.now(), self.clock
        )
        return invoice
