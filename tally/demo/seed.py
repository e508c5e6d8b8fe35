"""The demo organization that `tally serve` seeds into an empty database: subscribed 80 days
ago with its billing details, 30 days of usage, and its ended periods closed for real, so the
page has meters, statistics and invoices from the first minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository as billing_repository
from billing.accounts import OWNER_KEY_NAME, SERVICE_KEY_NAME, OpenedAccount
from billing.closing import close_due_periods
from billing.invoices import settle
from billing.models import Subscription
from billing.org_settings import update_settings
from core.auth import mint_api_key
from core.clock import FrozenClock
from core.orgs import Organization, Role
from core.orgs import repository as orgs_repository
from limits import LimitEngine
from tally.demo.history import seed_history
from tally.runtime import Runtime

DEMO_NAME = "Acme Shop"
DEMO_PLAN = "ecommerce-enterprise"
DEMO_OWNER = "owner@acme-shop.example"
DEMO_SUBSCRIBED = timedelta(days=80)
HISTORY_DAYS = 30
DEMO_SETTINGS = {
    "legal_name": "Acme Shop SAS",
    "billing_email": "billing@acme-shop.example",
    "address_line1": "12 rue de la Paix",
    "postal_code": "75002",
    "city": "Paris",
    "country": "FR",
    "vat_id": "FR40303265045",
}


@dataclass(frozen=True)
class DemoKeys:
    """The demo organization and fresh keys for it."""

    organization_id: str
    owner_api_key: str
    service_api_key: str
    created: bool


async def ensure_demo(runtime: Runtime) -> DemoKeys | None:
    """Seed the demo organization when the database is empty; when the demo exists, replace
    its keys with fresh ones (secrets are stored hashed, so old ones cannot be shown).
    None when the database holds other organizations and no demo."""
    async with runtime.db.write() as session:
        demo = await orgs_repository.find_demo_organization(session)
        if demo is not None:
            return await _fresh_keys(session, runtime, demo)
        if await orgs_repository.count_organizations(session):
            return None
    account = await _open_demo(runtime)
    now = runtime.clock.now()
    await seed_history(runtime, account.organization, now, HISTORY_DAYS)
    async with runtime.db.write() as session:
        organization = await billing_repository.lock_organization(session, account.organization.id)
        subscription = await billing_repository.lock_subscription(session, account.organization.id)
        assert organization is not None and subscription is not None
        await close_due_periods(
            session, runtime.engine, runtime.catalog, runtime.provider,
            organization, subscription, now,
        )  # fmt: skip
        await _pay_invoices(session, organization, subscription)
    await runtime.provider.send_pending(runtime.db, account.organization.id)
    return DemoKeys(account.organization.id, account.owner_api_key, account.service_api_key, True)


async def _pay_invoices(
    session: AsyncSession, organization: Organization, subscription: Subscription
) -> None:
    """The demo customer pays each local invoice by card the day it is issued, so its page
    shows a customer in good standing (not one in dunning)."""
    for invoice in await billing_repository.list_invoices(session, organization.id, 100):
        if invoice.provider == "local" and invoice.kind == "invoice" and invoice.status == "open":
            paid_at = datetime.combine(invoice.issued_on, time(10), tzinfo=UTC)
            await settle(session, organization, subscription, invoice, paid_at)


async def _open_demo(runtime: Runtime) -> OpenedAccount:
    """The demo organization, subscribed DEMO_SUBSCRIBED ago with its billing details, opened
    the way every account opens (`AccountService.open`: at the provider too)."""
    opened_at = (runtime.clock.now() - DEMO_SUBSCRIBED).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    past = LimitEngine(runtime.engine.plugins, FrozenClock(opened_at), runtime.engine.prices)

    async def prepare(session: AsyncSession, account: OpenedAccount) -> None:
        await update_settings(session, account.organization.id, DEMO_SETTINGS, opened_at)
        agent = await past.consume(
            session,
            account.organization,
            "agents",
            1,
            idempotency_key="demo:agent:1",
            attributes={"agent_id": "storefront-assistant"},
        )
        assert agent.allowed, "the demo plan allows an agent"

    opened = await runtime.accounts.open(
        name=DEMO_NAME,
        plan_id=DEMO_PLAN,
        owner_email=DEMO_OWNER,
        anchor_day=1,
        is_demo=True,
        engine=past,
        prepare=prepare,
    )
    return opened.account


async def _fresh_keys(session: AsyncSession, runtime: Runtime, demo: Organization) -> DemoKeys:
    now = runtime.clock.now()
    await orgs_repository.revoke_api_keys(session, demo.id, [OWNER_KEY_NAME, SERVICE_KEY_NAME], now)
    owner_key, owner_secret = mint_api_key(
        demo.id, OWNER_KEY_NAME, role=Role.OWNER, service=False, at=now
    )
    service_key, service_secret = mint_api_key(
        demo.id, SERVICE_KEY_NAME, role=None, service=True, at=now
    )
    await orgs_repository.add(session, owner_key, service_key)
    return DemoKeys(demo.id, owner_secret, service_secret, False)
