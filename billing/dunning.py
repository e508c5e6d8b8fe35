"""Payment state drives access: one set of rules for both providers.

A failed payment makes the subscription `past_due` and starts a grace period; once it has
passed, metered usage is refused (`organization.usage_suspended_from`, read by the limit
engine with the organization) while the page and billing keep working so the customer can
pay. Paying restores everything at once. A canceled subscription refuses usage from the
cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from billing.models import Subscription
from core.orgs import Organization

DEFAULT_GRACE = timedelta(days=7)


class SubscriptionStatus(StrEnum):
    """A subscription's payment state (Stripe's names)."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"


def status_of(subscription: Subscription, now: datetime) -> SubscriptionStatus:
    """The status in force at `now`: a trial whose end has passed is active even before the
    period that holds it is closed."""
    status = SubscriptionStatus(subscription.status)
    ended = subscription.trial_ends_at is not None and subscription.trial_ends_at <= now
    if status is SubscriptionStatus.TRIALING and ended:
        return SubscriptionStatus.ACTIVE
    return status


@dataclass(frozen=True)
class DunningState:
    """What the page tells a customer whose payment failed: pay by `usage_stops_at`."""

    past_due_since: datetime
    usage_stops_at: datetime

    def message(self, now: datetime) -> str:
        """What to do and by when, in the customer's words."""
        since = f"{self.past_due_since:%-d %B %Y}"
        stops = f"{self.usage_stops_at:%-d %B %Y at %H:%M} UTC"
        if now < self.usage_stops_at:
            return (
                f"A payment has been late since {since} (a failed charge or an overdue "
                f"invoice). Pay the open invoice (Manage Billing, or your invoices below) before "
                f"{stops}: after that, metered usage is refused until it is paid."
            )
        return (
            f"A payment has been late since {since}: metered usage has been refused since "
            f"{stops}. Paying the open invoice restores it at once."
        )


def payment_failed(
    organization: Organization, subscription: Subscription, at: datetime, grace: timedelta
) -> None:
    """A payment failed at `at`: past_due, usage stops once the grace period from the first
    failure has passed (a second failure does not extend it)."""
    if subscription.status == "canceled":
        return
    subscription.status = "past_due"
    subscription.past_due_since = subscription.past_due_since or at
    organization.usage_suspended_from = subscription.past_due_since + grace


def payment_settled(organization: Organization, subscription: Subscription, at: datetime) -> None:
    """Everything owed is paid: access restored at once."""
    if subscription.status == "canceled":
        return
    trialing = subscription.trial_ends_at is not None and at < subscription.trial_ends_at
    subscription.status = "trialing" if trialing else "active"
    subscription.past_due_since = None
    organization.usage_suspended_from = None


def set_status(
    organization: Organization,
    subscription: Subscription,
    status: str,
    at: datetime,
    grace: timedelta,
) -> None:
    """Apply a status the provider reports (Stripe's subscription.status)."""
    if status in ("past_due", "unpaid"):
        payment_failed(organization, subscription, at, grace)
        subscription.status = status
        if status == "unpaid":
            organization.usage_suspended_from = min(organization.usage_suspended_from or at, at)
    elif status == "canceled":
        subscription.status = "canceled"
        subscription.canceled_at = subscription.canceled_at or at
        organization.usage_suspended_from = min(organization.usage_suspended_from or at, at)
    elif status in ("active", "trialing"):
        subscription.status = status
        subscription.past_due_since = None
        organization.usage_suspended_from = None


def dunning_state(subscription: Subscription, organization: Organization) -> DunningState | None:
    """The grace the customer is in, or None when nothing is owed late."""
    if subscription.past_due_since is None or organization.usage_suspended_from is None:
        return None
    return DunningState(subscription.past_due_since, organization.usage_suspended_from)
