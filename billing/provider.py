"""What a billing provider does for Tally: the local ledger, or Stripe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from billing.catalog import Plan
from billing.models import Invoice, Subscription
from billing.money import Money
from billing.proration import Proration
from core.db import Database
from core.errors import ErrorCode, ProviderFailure, Unavailable
from core.orgs import Organization
from limits import Period


class ProviderError(ProviderFailure):
    """The provider refused or could not be reached; the caller changes nothing locally."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PROVIDER_ERROR, message)


class PortalUnavailable(Unavailable):
    """The provider has no customer portal."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PORTAL_UNAVAILABLE, message)


class Timing(StrEnum):
    """When a plan change takes effect."""

    AUTO = "auto"
    NOW = "now"
    PERIOD_END = "period_end"


@dataclass(frozen=True)
class ChangeRequest:
    """A plan change that the service has checked and priced, for the provider to carry out."""

    organization: Organization
    subscription: Subscription
    current: Plan
    new: Plan
    timing: Timing
    period: Period
    proration: Proration
    change_id: str
    provider_key: str = ""


@dataclass(frozen=True)
class PushedChange:
    """What the provider did for a change, outside any transaction: its invoice for the
    change (a provider-shaped payload), for the applying transaction to mirror."""

    invoice: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Opening:
    """A newly opened account, for the provider to subscribe: the organization on `plan`
    from `started_at`, trialing until `trial_ends_at`; `next_anchor` is the start of its
    first full billing period."""

    organization: Organization
    plan: Plan
    started_at: datetime
    next_anchor: datetime
    trial_ends_at: datetime | None
    customer_ref: str | None = None


@dataclass(frozen=True)
class ProviderRefs:
    """The provider's customer and subscription for an organization, and its status."""

    customer_ref: str
    subscription_ref: str
    status: str


@dataclass(frozen=True)
class PeriodClose:
    """A billing period that ended, for the provider to bill: its subscription price on `plan`
    (the plan in force at its start; a change during it was prorated when made), its usage
    limited and its overage priced by `final_plan` (the plan in force at its end), whatever
    plan is current when it is billed."""

    organization: Organization
    subscription: Subscription
    period: Period
    plan: Plan
    final_plan: Plan


@dataclass(frozen=True)
class Charge:
    """A one-off amount billed at once (a top-up pack). `source` names it uniquely (e.g.
    "topup:<purchase id>") and keys the provider's idempotency, so a retry bills it once."""

    organization: Organization
    subscription: Subscription
    description: str
    amount: Money
    source: str


@dataclass(frozen=True)
class Charged:
    """What the provider billed for a `Charge`: its invoice's id and payload, for the
    applying transaction to mirror."""

    reference: str
    invoice: Mapping[str, Any]


class BillingProvider(Protocol):
    """Carries out billing for Tally. A method taking a session runs inside the caller's
    transaction and makes no network call (but `preview_change`, asked in a read-only one);
    the others call the provider outside any
    transaction (bounded, idempotent) and raise ProviderError on failure."""

    name: str

    async def preview_change(
        self, session: AsyncSession, request: ChangeRequest
    ) -> Proration | None:
        """The provider's own figures for a change taking effect now (Stripe's invoice
        preview), or None when Tally's proration is the bill."""
        ...

    async def push_change(self, request: ChangeRequest) -> PushedChange:
        """Carry out a plan change at the provider, outside any transaction, idempotent by
        `request.provider_key` (NOW: the prorated amount; PERIOD_END: schedule it); local
        billing does nothing here."""
        ...

    async def apply_change(
        self, session: AsyncSession, request: ChangeRequest, pushed: PushedChange
    ) -> Invoice | None:
        """Record a change pushed, in the transaction that applies it (local: issue the
        prorated invoice; Stripe: mirror its invoice); the invoice, if any."""
        ...

    async def cancel_scheduled(self, subscription: Subscription, current: Plan, key: str) -> None:
        """Undo a change scheduled for the period's end at the provider, outside any
        transaction (Stripe: back to the current plan's price)."""
        ...

    async def set_cancel_at_period_end(
        self, subscription: Subscription, cancel: bool, key: str
    ) -> None:
        """Set or unset cancellation at the period's end at the provider, outside any
        transaction (local: the period close cancels)."""
        ...

    async def open_subscription(self, opening: Opening) -> ProviderRefs | None:
        """Subscribe a newly opened account at the provider, outside any transaction,
        idempotent by the organization; None when billing is local."""
        ...

    async def send_pending(self, db: Database, organization_id: str) -> None:
        """Send what closing periods left for the provider (Stripe: the overage reports),
        each exactly once, with no row lock held during the call."""
        ...

    async def checkout_url(self, subscription: Subscription, currency: str, return_url: str) -> str:
        """A page where the customer adds a payment method (Stripe Checkout in setup mode);
        PortalUnavailable when the provider has none."""
        ...

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        """Bill a billing period that ended."""
        ...

    async def charge(self, charge: Charge) -> Charged | None:
        """Bill `charge` at the provider, outside any database transaction (Stripe: an invoice
        item and an invoice finalized and paid at once, each call keyed by `source`, so a
        retry replays it); what the provider billed, or None when billing is local."""
        ...

    async def record_charge(
        self, session: AsyncSession, charge: Charge, charged: Charged | None
    ) -> Invoice | None:
        """Record a charge locally, in the transaction that applies it (local: issue the
        invoice; Stripe: mirror the invoice `charge` received)."""
        ...

    async def portal_url(self, subscription: Subscription, return_url: str) -> str:
        """A customer portal session's URL, asked outside any transaction; PortalUnavailable
        when the provider has none."""
        ...
