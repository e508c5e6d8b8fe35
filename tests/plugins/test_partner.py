"""A partner adds a resource by installing a package: no edit of Tally's code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from billing.accounts import OpenedAccount, open_account
from core.clock import FrozenClock
from core.config import Settings
from limits import ErrorCode, UsageRejected
from tally.app import create_app
from tally.runtime import Runtime, build_runtime
from tests.support import graphql, write_plans

pytestmark = pytest.mark.anyio

PARTNER = Path(__file__).with_name("partner")
PLANS = """
[plans.voice]
name = "Voice"
price_monthly = "99.00"
currency = "EUR"
[plans.voice.limits]
tokens = 1_000_000
voice_minutes = 100
"""


@pytest.fixture
async def runtime(
    database_url: str, tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.syspath_prepend(str(PARTNER))
    plans = write_plans(tmp_path / "plans.toml", PLANS)
    runtime = build_runtime(Settings(database_url=database_url, plans_path=plans), clock)
    yield runtime
    await runtime.db.dispose()


async def open_voice_org(runtime: Runtime) -> OpenedAccount:
    async with runtime.db.write() as session:
        return await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name="Voice Co",
            plan_id="voice",
            owner_email="owner@voice.example",
            anchor_day=1,
        )


async def test_partner_resource_is_loaded_from_its_entry_point(runtime: Runtime) -> None:
    assert runtime.engine.registry.owner("voice_minutes") == "voice"


async def test_partner_resource_is_in_the_schema_and_limited_by_the_plans_file(
    runtime: Runtime,
) -> None:
    account = await open_voice_org(runtime)
    async with runtime.db.write() as session:
        ok = await runtime.engine.consume(
            session, account.organization, "voice_minutes", 60, idempotency_key="call-1"
        )
        refused = await runtime.engine.consume(
            session, account.organization, "voice_minutes", 41, idempotency_key="call-2"
        )
    assert (ok.status, refused.status, refused.used, refused.limit) == (
        "accepted",
        "rejected",
        60,
        100,
    )

    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tally.test"
    ) as client:
        body = await graphql(
            client,
            account.owner_api_key,
            """{ organization { usage { voiceMinutes { key used limit display resets }
                                       resources { key } } }
                 resources { key label unit kind } }""",
        )
    usage = body["data"]["organization"]["usage"]
    assert usage["voiceMinutes"] == {
        "key": "voice_minutes",
        "used": 60,
        "limit": 100,
        "display": "60 / 100",
        "resets": True,
    }
    assert [r["key"] for r in usage["resources"]][-1] == "voice_minutes"
    assert {"key": "voice_minutes", "label": "Voice minutes", "unit": "minutes",
            "kind": "METERED"} in body["data"]["resources"]  # fmt: skip


async def test_an_attribute_the_resource_does_not_declare_is_refused(runtime: Runtime) -> None:
    account = await open_voice_org(runtime)
    async with runtime.db.write() as session:
        with pytest.raises(UsageRejected) as refused:
            await runtime.engine.consume(
                session,
                account.organization,
                "voice_minutes",
                3,
                idempotency_key="call-abc",
                attributes={"call_id": "abc"},
            )
    assert refused.value.code == ErrorCode.INVALID_ATTRIBUTE
    assert refused.value.message == (
        "voice_minutes does not take attribute(s) call_id; it takes: none"
    )


def test_without_the_package_the_resource_does_not_exist(
    database_url: str, clock: FrozenClock
) -> None:
    runtime = build_runtime(Settings(database_url=database_url), clock)
    assert "voice_minutes" not in runtime.engine.registry


def test_a_plan_limiting_an_uninstalled_resource_is_a_clear_start_up_error(
    database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    from billing import CatalogError

    plans = write_plans(tmp_path / "plans.toml", PLANS)
    with pytest.raises(CatalogError, match=r"voice_minutes.*no installed plugin"):
        build_runtime(Settings(database_url=database_url, plans_path=plans), clock)
