"""The demo organization that `tally serve` seeds into an empty database: subscribed 80 days
ago with its billing details, 30 days of usage, and its ended periods closed for real, so the
page has meters, statistics and invoices from the first minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository as billing_repository
from billing.accounts import OWNER_KEY_NAME, SERVICE_KEY_NAME, OpenedAccount, open_account
from billing.closing import close_due_periods
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
        account = await _open_demo(session, runtime)
    now = runtime.clock.now()
    await seed_history(runtime, account.organization, now, HISTORY_DAYS)
    async with runtime.db.write() as session:
        subscription = await billing_repository.get_subscription(session, account.organization.id)
        assert subscription is not None
        await close_due_periods(
            session, runtime.engine, runtime.catalog, runtime.provider,
            account.organization, subscription, now,
        )  # fmt: skip
    return DemoKeys(account.organization.id, account.owner_api_key, account.service_api_key, True)


async def _open_demo(session: AsyncSession, runtime: Runtime) -> OpenedAccount:
    """The demo organization, subscribed DEMO_SUBSCRIBED ago, with its billing details."""
    opened_at = (runtime.clock.now() - DEMO_SUBSCRIBED).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    past = LimitEngine(runtime.engine.plugins, FrozenClock(opened_at), runtime.engine.prices)
    account = await open_account(
        session,
        past,
        runtime.catalog,
        name=DEMO_NAME,
        plan_id=DEMO_PLAN,
        owner_email=DEMO_OWNER,
        anchor_day=1,
        is_demo=True,
    )
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
    return account


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
