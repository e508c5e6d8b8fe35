"""The demo organization that `tally serve --demo` seeds into an empty database: subscribed 80
days ago with its billing details, 30 days of usage, and its ended periods closed for real, so
the page has meters, statistics and invoices from the first minute.

Its keys survive restarts: the secrets live in a file readable by its owner only (beside the
SQLite database, or where TALLY_DEMO_KEYS_FILE says), never in clear in the database, and are
reused while they still authenticate; new ones are minted only when the file is missing or its
keys were revoked."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository as billing_repository
from billing.accounts import OWNER_KEY_NAME, SERVICE_KEY_NAME, OpenedAccount
from billing.closing import close_due_periods
from billing.invoices import settle
from billing.models import Subscription
from billing.org_settings import update_settings
from core.auth import authenticate, mint_api_key
from core.clock import FrozenClock
from core.db import dialect_of
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


DEMO_KEYS_SUFFIX = ".demo-keys.json"
DEFAULT_DEMO_KEYS_FILE = "tally-demo-keys.json"
"""Where the demo's keys are kept with PostgreSQL (no file beside the database), relative to
the working directory, unless TALLY_DEMO_KEYS_FILE says otherwise."""


@dataclass(frozen=True)
class DemoKeys:
    """The demo organization and its keys; `created` when seeded now, `reused` when the keys
    come from the keys file (else they were minted now)."""

    organization_id: str
    owner_api_key: str
    service_api_key: str
    created: bool
    reused: bool = False


def demo_keys_file(database_url: str, configured: str | None = None) -> Path:
    """The file that keeps the demo's secrets: `configured` (TALLY_DEMO_KEYS_FILE) if given;
    beside a SQLite database (`tally.db.demo-keys.json`); else `./tally-demo-keys.json`."""
    if configured:
        return Path(configured)
    if dialect_of(database_url) == "sqlite":
        database = database_url.split(":///", 1)[-1].split("?", 1)[0]
        if database and database != ":memory:":
            return Path(database + DEMO_KEYS_SUFFIX)
    return Path(DEFAULT_DEMO_KEYS_FILE)


def read_keys_file(path: Path) -> DemoKeys | None:
    """The keys the file holds, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DemoKeys(
            str(data["organization_id"]),
            str(data["owner_api_key"]),
            str(data["service_api_key"]),
            created=False,
            reused=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_keys_file(path: Path, keys: DemoKeys) -> None:
    """Write the keys atomically (a temporary file renamed over the old one), mode 0600."""
    body = {
        "organization_id": keys.organization_id,
        "owner_api_key": keys.owner_api_key,
        "service_api_key": keys.service_api_key,
    }
    directory = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(body, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


async def ensure_demo(runtime: Runtime, keys_file: Path | None = None) -> DemoKeys | None:
    """Seed the demo organization when the database is empty. When the demo exists, reuse the
    keys `keys_file` holds if both still authenticate for it, else replace its keys with new
    ones (secrets are stored hashed, so old ones cannot be shown). The keys in use are written
    to `keys_file` (default: `demo_keys_file`). None when the database holds other
    organizations and no demo."""
    path = keys_file or demo_keys_file(runtime.settings.database_url)
    async with runtime.db.write() as session:
        demo = await orgs_repository.find_demo_organization(session)
        if demo is not None:
            kept = await _kept_keys(session, demo, path)
            if kept is not None:
                return kept
            keys = await _fresh_keys(session, runtime, demo)
        elif await orgs_repository.count_organizations(session):
            return None
        else:
            keys = None
    if keys is None:
        keys = await _seed(runtime)
    write_keys_file(path, keys)
    return keys


async def _kept_keys(session: AsyncSession, demo: Organization, path: Path) -> DemoKeys | None:
    kept = read_keys_file(path)
    if kept is None or kept.organization_id != demo.id:
        return None
    for secret, service in ((kept.owner_api_key, False), (kept.service_api_key, True)):
        principal = await authenticate(session, secret)
        if principal is None or principal.organization_id != demo.id:
            return None
        if principal.service != service:
            return None
    return kept


async def _seed(runtime: Runtime) -> DemoKeys:
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
