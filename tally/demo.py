"""The demo organization that `tally serve` seeds into an empty database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import OWNER_KEY_NAME, SERVICE_KEY_NAME, OpenedAccount, open_account
from tally.auth import mint_api_key
from tally.history import seed_history
from tally.orgs import Organization, Role
from tally.orgs import repository as orgs_repository
from tally.runtime import Runtime

DEMO_NAME = "Acme Shop"
DEMO_PLAN = "ecommerce-enterprise"
DEMO_OWNER = "owner@acme-shop.example"
HISTORY_DAYS = 30


@dataclass(frozen=True)
class DemoKeys:
    """The demo organization and fresh keys for it."""

    organization_id: str
    owner_api_key: str
    service_api_key: str
    created: bool


async def ensure_demo(runtime: Runtime) -> DemoKeys | None:
    """Seed the demo organization (with 30 days of usage) when the database is empty; when the
    demo exists, replace its keys with fresh ones (secrets are stored hashed, so old ones
    cannot be shown). None when the database holds other organizations and no demo."""
    async with runtime.db.write() as session:
        demo = await orgs_repository.find_demo_organization(session)
        if demo is not None:
            return await _fresh_keys(session, runtime, demo)
        if await orgs_repository.count_organizations(session):
            return None
        account = await _open_demo(session, runtime)
    await seed_history(runtime, account.organization, runtime.clock.now(), HISTORY_DAYS)
    return DemoKeys(account.organization.id, account.owner_api_key, account.service_api_key, True)


async def _open_demo(session: AsyncSession, runtime: Runtime) -> OpenedAccount:
    account = await open_account(
        session,
        runtime.engine,
        runtime.catalog,
        name=DEMO_NAME,
        plan_id=DEMO_PLAN,
        owner_email=DEMO_OWNER,
        anchor_day=1,
        is_demo=True,
    )
    agent = await runtime.engine.consume(
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
