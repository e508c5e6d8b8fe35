"""One test per hook of limits/hookspecs.py, each through a real plugin (the one of
`tally_threshold_crossed` is in test_alerts.py, of `tally_display_usage` in
test_display_usage.py); test_hook_docs.py checks that each has one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from billing.accounts import open_account
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization
from limits import Limit, PluginError, Policy, Resource, UsageEvent, UsageRejected, hookimpl
from tally.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

WIDGETS = Resource(key="widgets", label="Widgets", unit="widgets", kind="gauge",
                   attributes=("colour",), default_limit=3)  # fmt: skip


class WidgetPlugin:
    def __init__(self) -> None:
        self.recorded: list[UsageEvent] = []

    @hookimpl
    def tally_register_resources(self) -> list[Resource]:
        return [WIDGETS]

    @hookimpl
    def tally_validate_usage(self, resource: Resource, attributes: Mapping[str, Any]) -> None:
        if resource.key == "widgets" and attributes.get("colour") == "mauve":
            raise UsageRejected("INVALID_ATTRIBUTE", "no mauve widgets")

    @hookimpl
    def tally_usage_recorded(self, resource: Resource, events: Sequence[UsageEvent]) -> None:
        if resource.key == "widgets":
            self.recorded.extend(events)


async def make_runtime(
    database_url: str, clock: FrozenClock, *plugins: tuple[object, str]
) -> Runtime:
    return build_runtime(Settings(database_url=database_url), clock, plugins)


async def open_org(runtime: Runtime) -> Organization:
    async with runtime.db.write() as session:
        account = await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name="Hooks",
            plan_id="starter",
            owner_email="o@example.com",
            anchor_day=1,
        )
    return account.organization


async def test_hook_tally_register_resources(database_url: str, clock: FrozenClock) -> None:
    runtime = await make_runtime(database_url, clock, (WidgetPlugin(), "widgets"))
    try:
        assert [r.key for r in runtime.engine.registry] == [
            "tokens",
            "documents",
            "agents",
            "seats",
            "widgets",
        ]
        assert runtime.engine.registry.owner("widgets") == "widgets"
        organization = await open_org(runtime)
        async with runtime.db.write() as session:
            decisions = [
                await runtime.engine.consume(session, organization, "widgets", 1,
                                             idempotency_key=f"w{i}")
                for i in range(4)
            ]  # fmt: skip
        assert [d.status for d in decisions] == ["accepted"] * 3 + ["rejected"]
    finally:
        await runtime.db.dispose()


def test_hook_tally_register_resources_duplicate_key_names_both_plugins(
    database_url: str, clock: FrozenClock
) -> None:
    class Impostor:
        @hookimpl
        def tally_register_resources(self) -> list[Resource]:
            return [Resource(key="tokens", label="Mine", unit="x", kind="metered")]

    with pytest.raises(PluginError, match="'tokens' is registered twice") as caught:
        build_runtime(Settings(database_url=database_url), clock, [(Impostor(), "impostor")])
    assert "plugin 'impostor'" in str(caught.value)
    assert "plugin 'tokens'" in str(caught.value)


def test_hookimpl_with_a_misspelt_hook_fails_at_start(
    database_url: str, clock: FrozenClock
) -> None:
    class Typo:
        @hookimpl
        def tally_register_resource(self) -> list[Resource]:
            return []

    with pytest.raises(PluginError, match="tally_register_resource"):
        build_runtime(Settings(database_url=database_url), clock, [(Typo(), "typo")])


def test_hookimpl_asking_for_an_argument_its_hook_does_not_pass_fails_at_start(
    database_url: str, clock: FrozenClock
) -> None:
    class Greedy:
        @hookimpl
        def tally_validate_usage(self, resource: Resource, colour: str) -> None:
            pass

    with pytest.raises(PluginError, match=r"tally_validate_usage[\s\S]*colour"):
        build_runtime(Settings(database_url=database_url), clock, [(Greedy(), "greedy")])


async def test_hook_tally_resolve_limit(database_url: str, clock: FrozenClock) -> None:
    class Generous:
        @hookimpl
        def tally_resolve_limit(self, resource: Resource) -> Limit | None:
            return Limit(1_000_000_000, Policy.SOFT) if resource.key == "tokens" else None

    runtime = await make_runtime(database_url, clock, (Generous(), "generous"))
    try:
        organization = await open_org(runtime)
        async with runtime.db.read() as session:
            snapshot = await runtime.engine.usage(session, organization)
        assert snapshot.get("tokens").limit == Limit(1_000_000_000, Policy.SOFT)
        assert snapshot.get("agents").limit == Limit(1, Policy.HARD)
    finally:
        await runtime.db.dispose()


async def test_hook_tally_validate_usage(database_url: str, clock: FrozenClock) -> None:
    runtime = await make_runtime(database_url, clock, (WidgetPlugin(), "widgets"))
    try:
        organization = await open_org(runtime)
        async with runtime.db.write() as session:
            with pytest.raises(UsageRejected, match="no mauve"):
                await runtime.engine.consume(
                    session,
                    organization,
                    "widgets",
                    1,
                    idempotency_key="m",
                    attributes={"colour": "mauve"},
                )
            ok = await runtime.engine.consume(
                session,
                organization,
                "widgets",
                1,
                idempotency_key="b",
                attributes={"colour": "blue"},
            )
        assert ok.status == "accepted"
    finally:
        await runtime.db.dispose()


async def test_hook_tally_usage_recorded(database_url: str, clock: FrozenClock) -> None:
    plugin = WidgetPlugin()
    runtime = await make_runtime(database_url, clock, (plugin, "widgets"))
    try:
        organization = await open_org(runtime)
        async with runtime.db.write() as session:
            await runtime.engine.consume(session, organization, "widgets", 2, idempotency_key="x")
            assert plugin.recorded == []
        assert [(e.resource, e.amount, e.idempotency_key) for e in plugin.recorded] == [
            ("widgets", 2, "x")
        ]
        with pytest.raises(RuntimeError, match="abort"):
            async with runtime.db.write() as session:
                await runtime.engine.consume(
                    session, organization, "widgets", 1, idempotency_key="y"
                )
                raise RuntimeError("abort")
        assert len(plugin.recorded) == 1
        async with runtime.db.write() as session:
            await runtime.engine.consume(session, organization, "widgets", 2, idempotency_key="x")
        assert len(plugin.recorded) == 1, "a replay records nothing"
    finally:
        await runtime.db.dispose()
