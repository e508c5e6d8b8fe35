"""What a billing provider does for Tally: the local ledger, or Stripe."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from billing.catalog import Plan
from billing.models import Invoice, Subscription
from billing.money import Money
from billing.proration import Proration
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


@dataclass(frozen=True)
class PeriodClose:
    """A billing period that ended, for the provider to bill on `plan` (the plan in force at
    its start)."""

    organization: Organization
    subscription: Subscription
    period: Period
    plan: Plan


@dataclass(frozen=True)
class Charge:
    """A one-off amount billed at once (a top-up pack). `source` names it uniquely (e.g.
    "topup:<purchase id>") and keys the provider's idempotency, so a retry bills it once."""

    organization: Organization
    subscription: Subscription
    description: str
    amount: Money
    source: str


class BillingProvider(Protocol):
    """Carries out billing for Tally. Every method runs inside the caller's transaction and
    raises ProviderError on failure, before anything local is written."""

    name: str

    async def preview_change(
        self, session: AsyncSession, request: ChangeRequest
    ) -> Proration | None:
        """The provider's own figures for a change taking effect now (Stripe's invoice
        preview), or None when Tally's proration is the bill."""
        ...

    async def apply_change(self, session: AsyncSession, request: ChangeRequest) -> Invoice | None:
        """Bill a plan change (NOW: the prorated amount; PERIOD_END: schedule it); the
        invoice issued for it, if any."""
        ...

    async def close_period(self, session: AsyncSession, close: PeriodClose) -> Invoice | None:
        """Bill a billing period that ended."""
        ...

    async def charge(self, charge: Charge) -> str | None:
        """Bill `charge` at the provider, outside any database transaction (Stripe: an invoice
        item and an invoice finalized at once, idempotent by `source`); the provider's
        reference of its invoice, or None when billing is local."""
        ...

    async def record_charge(
        self, session: AsyncSession, charge: Charge, reference: str | None
    ) -> Invoice | None:
        """Record a charge locally, in the transaction that applies it (local: issue the
        invoice; Stripe: mirror the provider's invoice `reference`)."""
        ...

    async def portal_url(
        self,
        session: AsyncSession,
        organization: Organization,
        subscription: Subscription,
        return_url: str,
    ) -> str:
        """A customer portal session's URL; PortalUnavailable when the provider has none."""
        ...
