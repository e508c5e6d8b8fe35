"""Billing through Stripe: a customer per organization, one subscription, prorated changes.

Every write carries an idempotency key. Stripe's invoices are mirrored by the webhook
handlers (billing/stripe/events.py) and, for a change, right after it, so the page lists
them without calling Stripe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from billing.catalog import Catalog, Plan
from billing.models import Invoice, Subscription
from billing.money import Money
from billing.org_settings import settings_of
from billing.proration import Proration
from billing.provider import ChangeRequest, PeriodClose, ProviderError, Timing
from billing.stripe.events import ORGANIZATION_KEY, PENDING_PLAN_KEY, PLAN_KEY, mirror_invoice
from core.clock import Clock
from core.orgs import Organization

T = TypeVar("T")


class StripeProvider:
    """Carries out billing in Stripe. `price_field` names the subscription item's price
    parameter: "price" for Stripe, "plan" for servers that only know Plans (localstripe)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        catalog: Catalog,
        clock: Clock,
        *,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        price_field: str = "price",
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=0,
            http_client=http_client,
        )
        self.catalog = catalog
        self.clock = clock
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

    async def ensure_customer(
        self, session: AsyncSession, organization: Organization, subscription: Subscription
    ) -> str:
        """The organization's Stripe customer, created the first time it is needed."""
        if subscription.customer_ref:
            return subscription.customer_ref
        settings = await settings_of(session, organization.id)
        params: dict[str, Any] = {
            "name": settings.legal_name or organization.name,
            "metadata": {ORGANIZATION_KEY: organization.id},
        }
        if settings.billing_email:
            params["email"] = settings.billing_email
        customer = await self._call(
            self.client.v1.customers.create,
            params,
            {"idempotency_key": f"tally-customer-{organization.id}"},
        )
        subscription.customer_ref = customer.id
        subscription.provider = self.name
        return customer.id

    async def ensure_subscription(
        self,
        session: AsyncSession,
        organization: Organization,
        subscription: Subscription,
        plan: Plan,
    ) -> str:
        """The organization's Stripe subscription on `plan`, created when it has none."""
        if subscription.subscription_ref:
            return subscription.subscription_ref
        customer = await self.ensure_customer(session, organization, subscription)
        created = await self._call(
            self.client.v1.subscriptions.create,
            {
                "customer": customer,
                "items": [{self.price_field: self._price(plan)}],
                "metadata": {ORGANIZATION_KEY: organization.id, PLAN_KEY: plan.id},
            },
            {"idempotency_key": f"tally-subscription-{organization.id}"},
        )
        subscription.subscription_ref = created.id
        subscription.status = created.status
        return created.id

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

    async def apply_change(self, session: AsyncSession, request: ChangeRequest) -> Invoice | None:
        price = self._price(request.new)
        reference = await self.ensure_subscription(
            session, request.organization, request.subscription, request.current
        )
        current = await self._call(self.client.v1.subscriptions.retrieve, reference)
        item = current["items"]["data"][0]["id"]
        now = request.timing is Timing.NOW
        metadata = {
            PLAN_KEY: request.new.id if now else request.current.id,
            PENDING_PLAN_KEY: "" if now else request.new.id,
        }
        updated = await self._call(
            self.client.v1.subscriptions.update,
            reference,
            {
                "items": [{"id": item, self.price_field: price}],
                "proration_behavior": "always_invoice" if now else "none",
                "metadata": metadata,
            },
            {"idempotency_key": f"tally-change-{request.change_id}"},
        )
        latest = updated.latest_invoice
        if not now or not latest:
            return None
        if isinstance(latest, str):
            latest = await self._call(self.client.v1.invoices.retrieve, latest)
        invoice, _ = await mirror_invoice(
            session, request.organization.id, latest.to_dict(), self.clock.now(), self.clock
        )
        return invoice

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        subscription = close.subscription
        if subscription.pending_plan_id and subscription.subscription_ref:
            key = f"tally-close-{close.organization.id}-{close.period.start.date()}"
            await self._call(
                self.client.v1.subscriptions.update,
                subscription.subscription_ref,
                {"metadata": {PLAN_KEY: subscription.pending_plan_id, PENDING_PLAN_KEY: ""}},
                {"idempotency_key": key},
            )
        return None

    async def portal_url(
        self,
        session: AsyncSession,
        organization: Organization,
        subscription: Subscription,
        return_url: str,
    ) -> str:
        customer = await self.ensure_customer(session, organization, subscription)
        portal = await self._call(
            self.client.v1.billing_portal.sessions.create,
            {"customer": customer, "return_url": return_url},
        )
        return str(portal.url)
