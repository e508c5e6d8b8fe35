"""Billing and accounts as services: one method per verb, each in its own transaction.

The GraphQL mutations call these and only map what they return; failures are raised as
`DomainError`s (not found, invalid input, conflict, provider failure) for the API to translate.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from billing import accounts, repository
from billing.catalog import Catalog
from billing.models import Invoice
from billing.org_settings import update_settings
from billing.plan_change import Changed, PlanChanger, Preview
from billing.provider import BillingProvider, Timing
from billing.recommend import Recommendation, recommend
from billing.settings import BillingSettings
from billing.subscriptions import SubscriptionView, subscription_of
from core.clock import Clock
from core.db import Database
from core.errors import ErrorCode, InvalidInput, NotFound
from core.orgs import ApiKey, Member, Organization, Role
from core.orgs import repository as orgs_repository
from limits import LimitEngine, UsageSnapshot

MAX_PAGE = 100
MAX_KEY_NAME = 200
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class InvoicePage:
    """Invoices newest first, and the cursor after the last one."""

    invoices: Sequence[Invoice]
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True)
class PlanChangeOutcome:
    """A plan change made (or scheduled), and the subscription after it."""

    changed: Changed
    subscription: SubscriptionView


def invoice_cursor(invoice: Invoice) -> str:
    return base64.urlsafe_b64encode(
        f"{invoice.issued_on.isoformat()}|{invoice.id}".encode()
    ).decode()


def parse_invoice_cursor(cursor: str) -> tuple[date, str]:
    try:
        issued_on, invoice_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return date.fromisoformat(issued_on), invoice_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(
            ErrorCode.INVALID_INPUT, f"invalid cursor {cursor!r}", field="after"
        ) from None


class AccountService:
    """Members and API keys of an organization."""

    def __init__(self, db: Database, engine: LimitEngine) -> None:
        self.db = db
        self.engine = engine

    async def invite(self, organization: Organization, email: str, role: Role) -> Member:
        async with self.db.write() as session:
            return await accounts.invite_member(
                session, self.engine, organization, email=email, role=role
            )

    async def remove(self, organization: Organization, member_id: str) -> Member:
        async with self.db.write() as session:
            member = await accounts.remove_member(session, self.engine, organization, member_id)
        if member is None:
            raise NotFound.of("member")
        return member

    async def create_key(
        self, organization: Organization, name: str, role: Role | None, service: bool
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once)."""
        if service == (role is not None):
            raise InvalidInput(
                ErrorCode.INVALID_INPUT,
                "give a role for a member key, or service: true without a role",
                field="role",
            )
        if not name.strip() or len(name) > MAX_KEY_NAME:
            raise InvalidInput(
                ErrorCode.INVALID_INPUT, "a key name needs 1 to 200 characters", field="name"
            )
        async with self.db.write() as session:
            return await accounts.create_api_key(
                session, self.engine, organization, name=name.strip(), role=role, service=service
            )

    async def revoke(self, organization: Organization, key_id: str) -> ApiKey:
        async with self.db.write() as session:
            key = await accounts.revoke_api_key(session, self.engine, organization, key_id)
        if key is None:
            raise NotFound.of("API key")
        return key


class BillingService:
    """Plans, plan changes, settings, invoices and the provider's portal."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        catalog: Catalog,
        engine: LimitEngine,
        plan_changes: PlanChanger,
        provider: BillingProvider,
    ) -> None:
        self.db = db
        self.clock = clock
        self.catalog = catalog
        self.engine = engine
        self.plan_changes = plan_changes
        self.provider = provider

    async def preview_change(self, organization_id: str, plan_id: str, timing: Timing) -> Preview:
        """What a change would cost and block; changes nothing."""
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            if organization is None:
                raise NotFound.of("organization")
            return await self.plan_changes.preview(session, organization, plan_id, timing)

    async def change_plan(
        self, organization_id: str, plan_id: str, timing: Timing, idempotency_key: str | None
    ) -> PlanChangeOutcome:
        """Apply (or schedule) a change; replaying the same key answers the same change."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(
                ErrorCode.INVALID_INPUT,
                "idempotencyKey needs 1 to 200 characters",
                field="idempotency_key",
            )
        async with self.db.write() as session:
            organization = await repository.lock_organization(session, organization_id)
            if organization is None:
                raise NotFound.of("organization")
            changed = await self.plan_changes.change(
                session, organization, plan_id, timing, idempotency_key
            )
            view = await subscription_of(session, self.engine, self.catalog, organization)
        return PlanChangeOutcome(changed, view)

    async def update_settings(
        self, organization_id: str, changes: Mapping[str, str | None]
    ) -> BillingSettings:
        """Validate and store billing settings (snake_case names; None clears)."""
        async with self.db.write() as session:
            if await repository.lock_subscription(session, organization_id) is None:
                raise NotFound.of("organization")
            return await update_settings(session, organization_id, changes, self.clock.now())

    async def portal_url(self, organization_id: str, return_url: str) -> str:
        """A customer portal session's URL at the provider."""
        parts = urlsplit(return_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(
                ErrorCode.INVALID_INPUT, "returnUrl must be an http(s) URL", field="return_url"
            )
        async with self.db.write() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            subscription = await repository.lock_subscription(session, organization_id)
            if organization is None or subscription is None:
                raise NotFound.of("organization")
            return await self.provider.portal_url(session, organization, subscription, return_url)

    async def invoices(self, organization_id: str, first: int, after: str | None) -> InvoicePage:
        """A page of invoices, newest first, after the cursor `after`."""
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput(
                ErrorCode.INVALID_INPUT,
                f"first must be 1 to {MAX_PAGE}, not {first}",
                field="first",
            )
        cursor = parse_invoice_cursor(after) if after else None
        async with self.db.read() as session:
            rows = await repository.list_invoices(session, organization_id, first + 1, cursor)
        page = rows[:first]
        return InvoicePage(page, len(rows) > first, invoice_cursor(page[-1]) if page else None)

    def recommendations(
        self, organization: Organization, usage: UsageSnapshot
    ) -> list[Recommendation]:
        """Plans that fit the usage with headroom, cheapest first, and the current plan."""
        return recommend(self.catalog, organization.plan_id, usage, self.clock.now())
