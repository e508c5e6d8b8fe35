"""Billing and accounts as services: one method per verb, each in its own transaction.

The GraphQL mutations call these and only map what they return; failures are raised as
`DomainError`s (not found, invalid input, conflict, provider failure) for the API to translate.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from billing import accounts, repository
from billing.accounts import OpenedAccount
from billing.catalog import Catalog
from billing.invoices import InvoiceService
from billing.models import Invoice, Subscription
from billing.org_settings import update_settings
from billing.plan_change import Changed, Intent, PlanChanger, Preview
from billing.provider import BillingProvider, Opening, ProviderError, Timing
from billing.recommend import Recommendation, recommend
from billing.settings import BillingSettings
from billing.subscriptions import SubscriptionView, subscription_of
from core import audit
from core.auth import Principal
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


def _check_return_url(return_url: str) -> None:
    parts = urlsplit(return_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            ErrorCode.INVALID_INPUT, "returnUrl must be an http(s) URL", field="return_url"
        )


def opening_of(
    engine: LimitEngine, catalog: Catalog, organization: Organization, subscription: Subscription
) -> Opening:
    """What the provider needs to subscribe an organization now: its current plan, the start
    of its first full period from now and after any trial (the anchor), and its refs so far."""
    plan = catalog.get(organization.plan_id)
    trial_ends_at = subscription.trial_ends_at if subscription.status == "trialing" else None
    start = max(subscription.started_at, trial_ends_at or engine.clock.now(), engine.clock.now())
    period = engine.period(organization, start)
    anchor = period.start if period.start == start else period.end
    return Opening(
        organization,
        plan,
        subscription.started_at,
        anchor,
        trial_ends_at,
        subscription.customer_ref,
    )


async def subscribe(db: Database, provider: BillingProvider, opening: Opening) -> None:
    """Subscribe the organization at the provider outside any transaction, then store its
    refs in a short one (ProviderError, nothing stored, when the provider fails)."""
    refs = await provider.open_subscription(opening)
    if refs is None:
        return
    async with db.write() as session:
        subscription = await repository.lock_subscription(session, opening.organization.id)
        if subscription is None:
            return
        subscription.provider = provider.name
        subscription.customer_ref = refs.customer_ref
        subscription.subscription_ref = refs.subscription_ref
        await repository.add(session, subscription)


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


@dataclass(frozen=True)
class Opened:
    """An account opened: its secrets, and the provider's failure to subscribe it, if any
    (the organization stays open without provider refs; `tally stripe-sync --apply`
    completes it)."""

    account: OpenedAccount
    provider_error: str | None = None


class AccountService:
    """Opening accounts; members and API keys of an organization."""

    def __init__(
        self, db: Database, engine: LimitEngine, catalog: Catalog, provider: BillingProvider
    ) -> None:
        self.db = db
        self.engine = engine
        self.catalog = catalog
        self.provider = provider

    async def open(
        self,
        *,
        name: str,
        plan_id: str,
        owner_email: str,
        anchor_day: int | None = None,
        is_demo: bool = False,
        currency: str | None = None,
        locale: str | None = None,
        engine: LimitEngine | None = None,
        prepare: Callable[[AsyncSession, OpenedAccount], Awaitable[None]] | None = None,
    ) -> Opened:
        """Open an account: every sign-up path (create-org, the demo) goes through here.
        The organization is committed first, then subscribed at the provider outside any
        transaction (Stripe: customer and subscription anchored to its billing anchor), then
        the provider's refs stored in a second short transaction. `engine` opens it at
        another instant (the demo's past); `prepare` adds to the opening transaction."""
        opening_engine = engine or self.engine
        async with self.db.write() as session:
            account = await accounts.open_account(
                session,
                opening_engine,
                self.catalog,
                name=name,
                plan_id=plan_id,
                owner_email=owner_email,
                anchor_day=anchor_day,
                is_demo=is_demo,
                currency=currency,
                locale=locale,
            )
            if prepare is not None:
                await prepare(session, account)
            subscription = await repository.get_subscription(session, account.organization.id)
            assert subscription is not None
            opening = opening_of(self.engine, self.catalog, account.organization, subscription)
        try:
            await subscribe(self.db, self.provider, opening)
        except ProviderError as error:
            return Opened(account, error.message)
        return Opened(account)

    async def invite(
        self, organization: Organization, email: str, role: Role, caller: Principal | None = None
    ) -> Member:
        """Invite a person with a role at most the caller's."""
        accounts.check_role_at_most(role, caller.role if caller else None, "a member you invite")
        async with self.db.write() as session:
            return await accounts.invite_member(
                session, self.engine, organization, email=email, role=role
            )

    async def remove(
        self, organization: Organization, member_id: str, caller: Principal | None = None
    ) -> Member:
        """Remove a member and revoke their keys (LAST_OWNER for the last owner)."""
        by = caller.role if caller else None
        async with self.db.write() as session:
            member = await accounts.remove_member(
                session, self.engine, organization, member_id, by=by
            )
        if member is None:
            raise NotFound.of("member")
        return member

    async def change_role(
        self, organization: Organization, member_id: str, role: Role, caller: Principal | None
    ) -> Member:
        """Give a member another role (LAST_OWNER for the last owner's demotion)."""
        by = caller.role if caller else None
        async with self.db.write() as session:
            member = await accounts.change_member_role(
                session, self.engine, organization, member_id, role, by=by
            )
        if member is None:
            raise NotFound.of("member")
        return member

    async def keys(self, organization_id: str) -> Sequence[ApiKey]:
        """Every key of the organization (never a secret), the newest first."""
        async with self.db.read() as session:
            return await orgs_repository.list_api_keys(session, organization_id)

    async def audit_log(
        self, organization_id: str, first: int, after: str | None
    ) -> audit.AuditPage:
        """A page of the organization's audit log, newest first."""
        async with self.db.read() as session:
            return await audit.page(session, organization_id, first, after)

    async def create_key(
        self,
        organization: Organization,
        name: str,
        role: Role | None,
        service: bool,
        caller: Principal | None = None,
        expires_at: datetime | None = None,
        member_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once): a member key with a role at most the
        caller's, belonging to `member_id` (the caller's member by default), or a service
        key."""
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
        if role is not None:
            accounts.check_role_at_most(role, caller.role if caller else None, "a key you create")
        async with self.db.write() as session:
            return await accounts.create_api_key(
                session,
                self.engine,
                organization,
                name=name.strip(),
                role=role,
                service=service,
                member_id=member_id or (caller.member_id if caller else None),
                expires_at=expires_at,
            )

    async def revoke(
        self, organization: Organization, key_id: str, caller: Principal | None = None
    ) -> ApiKey:
        """Revoke a key at once (not one with a role above the caller's)."""
        by = caller.role if caller else None
        async with self.db.write() as session:
            key = await accounts.revoke_api_key(session, self.engine, organization, key_id, by=by)
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
        """Apply (or schedule) a change; replaying the same key answers the same change. A
        change back to the current plan while another is scheduled cancels that one.

        Three steps, no provider call under a lock: the intent committed (`pending`, its
        provider key derived from `idempotency_key`), the provider's step, the result
        applied in a second short transaction. A retry with the same key after a failure
        between the provider's success and the local commit resumes the pending change
        under the same provider key. A change without a key gets a fresh one, written with
        the intent before the provider is called."""
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
            subscription = await repository.get_subscription(session, organization_id)
            back = plan_id == organization.plan_id and subscription is not None
            if back and subscription is not None and subscription.pending_plan_id is not None:
                step: Intent | Changed | None = None
            else:
                step = await self.plan_changes.begin(
                    session, organization, plan_id, timing, idempotency_key
                )
        if step is None:
            return await self.cancel_scheduled_change(organization_id)
        if isinstance(step, Intent):
            try:
                pushed = await self.provider.push_change(step.request)
            except ProviderError:
                async with self.db.write() as session:
                    await self.plan_changes.fail(session, step.plan_change.id)
                raise
            async with self.db.write() as session:
                organization, subscription = await self._lock(session, organization_id)
                step = await self.plan_changes.finish(
                    session, organization, subscription, step.plan_change.id, pushed
                )
        await self.provider.send_pending(self.db, organization_id)
        return PlanChangeOutcome(step, await self._view(organization_id))

    async def cancel_scheduled_change(self, organization_id: str) -> PlanChangeOutcome:
        """Undo the change scheduled for the period's end (NOTHING_SCHEDULED when none): at
        the provider first, outside any lock, then locally."""
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            if organization is None:
                raise NotFound.of("organization")
            scheduled = await self.plan_changes.scheduled(session, organization)
            subscription = await repository.get_subscription(session, organization_id)
            assert subscription is not None
        current = self.catalog.get(organization.plan_id)
        await self.provider.cancel_scheduled(subscription, current, f"tally-cancel-{scheduled.id}")
        async with self.db.write() as session:
            organization, subscription = await self._lock(session, organization_id)
            change = await self.plan_changes.cancel(session, subscription, scheduled.id)
        return PlanChangeOutcome(Changed(change, None, False), await self._view(organization_id))

    async def set_cancel_at_period_end(
        self, organization_id: str, cancel: bool
    ) -> SubscriptionView:
        """Cancel the subscription at the period's end (the period close cancels it), or
        take that back; at the provider first, outside any lock."""
        async with self.db.read() as session:
            subscription = await repository.get_subscription(session, organization_id)
        if subscription is None:
            raise NotFound.of("organization")
        if subscription.status == "canceled":
            raise InvalidInput(
                ErrorCode.SUBSCRIPTION_INACTIVE, "the subscription is canceled", field="cancel"
            )
        stamp = int(self.clock.now().timestamp())
        key = f"tally-cancel-at-end-{organization_id}-{int(cancel)}-{stamp}"
        await self.provider.set_cancel_at_period_end(subscription, cancel, key)
        async with self.db.write() as session:
            _, subscription = await self._lock(session, organization_id)
            before = {"cancel_at_period_end": subscription.cancel_at_period_end}
            subscription.cancel_at_period_end = cancel
            await repository.add(session, subscription)
            await audit.record(
                session,
                organization_id,
                "subscription.cancel_at_period_end",
                at=self.clock.now(),
                before=before,
                after={"cancel_at_period_end": cancel},
            )
        return await self._view(organization_id)

    async def _lock(
        self, session: AsyncSession, organization_id: str
    ) -> tuple[Organization, Subscription]:
        organization = await repository.lock_organization(session, organization_id)
        subscription = await repository.lock_subscription(session, organization_id)
        if organization is None or subscription is None:
            raise NotFound.of("organization")
        return organization, subscription

    async def _view(self, organization_id: str) -> SubscriptionView:
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            if organization is None:
                raise NotFound.of("organization")
            return await subscription_of(session, self.engine, self.catalog, organization)

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
        _check_return_url(return_url)
        _, subscription = await self._refs(organization_id)
        return await self.provider.portal_url(subscription, return_url)

    async def checkout_url(self, organization_id: str, return_url: str) -> str:
        """A page where the customer adds a payment method (Stripe Checkout, setup mode)."""
        _check_return_url(return_url)
        organization, subscription = await self._refs(organization_id)
        return await self.provider.checkout_url(subscription, organization.currency, return_url)

    async def _refs(self, organization_id: str) -> tuple[Organization, Subscription]:
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
            subscription = await repository.get_subscription(session, organization_id)
        if organization is None or subscription is None:
            raise NotFound.of("organization")
        return organization, subscription

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

    async def mark_invoice_paid(self, organization_id: str, invoice_id: str) -> Invoice:
        """Settle a local invoice (paid by transfer); access is restored once nothing is
        overdue (see billing.invoices)."""
        return await InvoiceService(self.db, self.clock).mark_paid(organization_id, invoice_id)

    def recommendations(
        self, organization: Organization, usage: UsageSnapshot
    ) -> list[Recommendation]:
        """Plans that fit the usage with headroom, cheapest first, and the current plan."""
        return recommend(
            self.catalog,
            organization.plan_id,
            usage,
            self.clock.now(),
            started_at=organization.created_at,
            currency=organization.currency,
        )
