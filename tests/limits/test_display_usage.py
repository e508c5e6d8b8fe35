"""`tally_display_usage` is display-only: the meter shows the plugin's own count, while every
decision (consume, check, reserve), alert and bill counts Tally's counter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import OpenedAccount, invite_member
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Member, Organization
from limits import Resource, hookimpl
from limits.periods import Period
from tally.runtime import Runtime, build_runtime
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio

LINES = Resource(key="phone_lines", label="Phone lines", unit="lines", kind="gauge",
                 default_limit=3)  # fmt: skip
METERS = "{ organization { usage { resources { key used limit remaining percent display } } } }"


class PhoneLines:
    """A partner whose own table (here: the organization's members, one line each) holds the
    lines it shows."""

    def __init__(self) -> None:
        self.periods: list[Period | None] = []

    @hookimpl
    def tally_register_resources(self) -> list[Resource]:
        return [LINES]

    @hookimpl
    def tally_display_usage(
        self, session: AsyncSession, organization: Organization, resource: Resource,
        period: Period | None,
    ) -> Any:  # fmt: skip
        self.periods.append(period)
        if resource.key != "phone_lines":
            return None

        async def count() -> int:
            statement = select(func.count()).where(
                Member.organization_id == organization.id  # type: ignore[arg-type]
            )
            return int((await session.execute(statement)).scalar_one())

        return count()


@pytest.fixture
def plans() -> None:
    """The built-in catalog (the organization is on Ecommerce Enterprise)."""
    return None


@pytest.fixture
def plugin() -> PhoneLines:
    return PhoneLines()


@pytest.fixture
async def runtime(
    settings: Settings, clock: FrozenClock, plugin: PhoneLines
) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings, clock, [(plugin, "phone-lines")])
    yield runtime
    await runtime.db.dispose()


@pytest.fixture
async def account(open_org: OpenOrg) -> OpenedAccount:
    return await open_org()


async def meter(client: httpx.AsyncClient, account: OpenedAccount) -> dict[str, Any]:
    body = await graphql(client, account.owner_api_key, METERS)
    [lines] = [m for m in body["data"]["organization"]["usage"]["resources"]
               if m["key"] == "phone_lines"]  # fmt: skip
    return dict(lines)


async def consume(runtime: Runtime, account: OpenedAccount, amount: int, key: str) -> str:
    async with runtime.db.write() as session:
        decision = await runtime.engine.consume(
            session, account.organization, "phone_lines", amount, idempotency_key=key
        )
    return f"{decision.status} {decision.used}"


async def test_hook_tally_display_usage(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, plugin: PhoneLines
) -> None:
    assert await meter(client, account) == {
        "key": "phone_lines",
        "used": 1,
        "limit": 3,
        "remaining": 2,
        "percent": 33.33,
        "display": "1 / 3",
    }
    assert plugin.periods.count(None) == 4  # the gauges: documents, agents, seats, lines
    assert any(p is not None and runtime.engine.clock.now() in p for p in plugin.periods)

    async with runtime.db.write() as session:
        await invite_member(session, runtime.engine, account.organization, email="b@example.com")
    assert (await meter(client, account))["used"] == 2


async def test_decisions_count_tallys_counter_not_the_displayed_count(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> None:
    assert await consume(runtime, account, 3, "three") == "accepted 3"
    assert await consume(runtime, account, 1, "fourth") == "rejected 3"
    assert (await meter(client, account))["used"] == 1
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, account.organization)
    lines = snapshot.get("phone_lines")
    assert (lines.used, lines.displayed, lines.shown) == (3, 1, 1)
