"""`tally stripe-sync`: Tally's subscriptions against Stripe's, and what is missing created.

For every organization it compares the plan, the status and the current period with the
Stripe subscription and reports the drift, one line per organization. With `apply`, an
organization without a Stripe customer or subscription (opened before Stripe was
configured, or whose opening could not reach Stripe) is subscribed under the same
idempotency keys the opening uses, and what closing left to send is sent; running it again
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing import repository
from billing.catalog import Catalog
from billing.provider import ProviderError
from billing.services import opening_of, subscribe
from billing.stripe.events import PLAN_KEY
from billing.stripe.provider import StripeProvider
from core.db import Database
from limits import LimitEngine


@dataclass(frozen=True)
class SyncLine:
    """One organization: `state` is "in_sync", "drift", "missing", "created" or "failed"."""

    organization_id: str
    state: str
    detail: str


async def stripe_sync(
    db: Database, engine: LimitEngine, catalog: Catalog, provider: StripeProvider, apply: bool
) -> list[SyncLine]:
    """Compare every organization with Stripe; with `apply`, create what is missing."""
    async with db.read() as session:
        rows = await repository.organizations_to_close(session)
    lines = []
    for organization, subscription in rows:
        if not subscription.subscription_ref:
            missing = "no Stripe customer" if not subscription.customer_ref else ""
            detail = missing or "no Stripe subscription"
            if not apply:
                lines.append(SyncLine(organization.id, "missing", detail))
                continue
            try:
                await subscribe(
                    db, provider, opening_of(engine, catalog, organization, subscription)
                )
            except ProviderError as error:
                lines.append(SyncLine(organization.id, "failed", f"{detail}: {error.message}"))
                continue
            lines.append(SyncLine(organization.id, "created", f"{detail}: subscribed now"))
            continue
        try:
            remote = await provider.subscription_state(subscription)
            if apply:
                await provider.send_pending(db, organization.id)
        except ProviderError as error:
            lines.append(SyncLine(organization.id, "failed", error.message))
            continue
        period = engine.period(organization)
        drift = _drift(
            remote or {},
            catalog,
            organization.plan_id,
            subscription.status,
            (period.start, period.end),
        )
        state = "drift" if drift else "in_sync"
        lines.append(SyncLine(organization.id, state, "; ".join(drift) or "in sync"))
    return lines


def _drift(
    remote: Mapping[str, Any],
    catalog: Catalog,
    plan_id: str,
    status: str,
    period: tuple[datetime, datetime],
) -> list[str]:
    drift = []
    remote_plan = (remote.get("metadata") or {}).get(PLAN_KEY) or _plan_of_price(remote, catalog)
    if remote_plan != plan_id:
        drift.append(f"plan: Tally {plan_id}, Stripe {remote_plan}")
    remote_status = remote.get("status")
    if remote_status != status:
        drift.append(f"status: Tally {status}, Stripe {remote_status}")
    remote_period = _period(remote)
    if remote_period is not None and remote_period != period:
        drift.append(
            f"period: Tally {period[0].date()} to {period[1].date()}, "
            f"Stripe {remote_period[0].date()} to {remote_period[1].date()}"
        )
    return drift


def _plan_of_price(remote: Mapping[str, Any], catalog: Catalog) -> str | None:
    for item in (remote.get("items") or {}).get("data") or []:
        price = (item.get("price") or item.get("plan") or {}).get("id")
        for plan in catalog:
            if price and plan.stripe_price == price:
                return plan.id
    return None


def _period(remote: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """The subscription's current period (on the subscription in older API versions, on its
    items in newer ones)."""
    holders = [remote, *((remote.get("items") or {}).get("data") or [])]
    for holder in holders:
        start, end = holder.get("current_period_start"), holder.get("current_period_end")
        if isinstance(start, int) and isinstance(end, int):
            return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    return None
