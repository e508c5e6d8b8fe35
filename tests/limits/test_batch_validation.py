"""A batch is validated in one pass per resource: `tally_validate_batch` once per resource of
the batch, `tally_validate_usage` once per event and only when a plugin implements it, the
refusal of the lowest index named; model prices are exact integer arithmetic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.accounts import open_account
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization
from limits import ErrorCode, PreparedEvent, Resource, UsageInput, UsageRejected, hookimpl
from limits.pricing import ModelPrice
from tally.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

WIDGETS = Resource(key="widgets", label="Widgets", unit="widgets", kind="gauge",
                   attributes=("colour",))  # fmt: skip


class BatchWidgets:
    """Refuses mauve widgets in one call per resource, and keeps the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    @hookimpl
    def tally_register_resources(self) -> list[Resource]:
        return [WIDGETS]

    @hookimpl
    def tally_validate_batch(self, resource: Resource, events: Sequence[PreparedEvent]) -> None:
        self.calls.append((resource.key, [event.idempotency_key for event in events]))
        if resource.key != WIDGETS.key:
            return
        for position, event in enumerate(events):
            if event.attributes.get("colour") == "mauve":
                raise UsageRejected(ErrorCode.INVALID_ATTRIBUTE, "no mauve widgets", position)


class EachWidget:
    """Refuses teal widgets one event at a time, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def tally_validate_usage(self, resource: Resource, attributes: Mapping[str, Any]) -> None:
        self.calls += 1
        if resource.key == WIDGETS.key and attributes.get("colour") == "teal":
            raise UsageRejected(ErrorCode.INVALID_ATTRIBUTE, "no teal widgets")


@pytest.fixture
async def runtime(database_url: str, clock: FrozenClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(
        Settings(database_url=database_url),
        clock,
        [(BatchWidgets(), "batch-widgets"), (EachWidget(), "each-widget")],
    )
    yield runtime
    await runtime.db.dispose()


@pytest.fixture
async def organization(runtime: Runtime) -> Organization:
    async with runtime.db.write() as session:
        account = await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name="Batches",
            plan_id="ecommerce-enterprise",
            owner_email="batches@example.com",
        )
    return account.organization


T = TypeVar("T")


def plugin(runtime: Runtime, kind: type[T]) -> T:
    found = [p for p in runtime.engine.plugins.get_plugins() if isinstance(p, kind)]
    assert len(found) == 1
    return found[0]


def widget(key: str, colour: str = "blue") -> UsageInput:
    return UsageInput("widgets", 1, key, attributes={"colour": colour})


def tokens(key: str, **attributes: Any) -> UsageInput:
    return UsageInput("tokens", 10, key, attributes={"model": "gpt-4o", **attributes})


async def used(runtime: Runtime, organization: Organization) -> dict[str, int]:
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, organization)
    return {meter.resource.key: meter.used for meter in snapshot.resources}


async def test_hook_tally_validate_batch(runtime: Runtime, organization: Organization) -> None:
    batch_widgets = plugin(runtime, BatchWidgets)
    batch = [widget("w0"), tokens("t0"), widget("w1"), tokens("t1"), widget("w2")]
    batch_widgets.calls.clear()
    async with runtime.db.write() as session:
        decisions = await runtime.engine.record(session, organization, batch)
    assert [d.status for d in decisions] == ["accepted"] * 5
    assert batch_widgets.calls == [("widgets", ["w0", "w1", "w2"]), ("tokens", ["t0", "t1"])]
    before = await used(runtime, organization)

    refused = [widget("w3"), tokens("t3"), widget("w4"), widget("w5", "mauve"), tokens("t4")]
    async with runtime.db.write() as session:
        with pytest.raises(UsageRejected) as caught:
            await runtime.engine.record(session, organization, refused)
    assert caught.value.message == "events[3]: no mauve widgets"
    assert caught.value.index == 3
    assert await used(runtime, organization) == before


async def test_a_single_event_is_refused_without_an_index(
    runtime: Runtime, organization: Organization
) -> None:
    with pytest.raises(UsageRejected) as caught:
        runtime.engine.prepare(organization, [widget("w", "mauve")])
    assert caught.value.message == "no mauve widgets"


SPOILERS: dict[str, dict[str, Any]] = {
    "amount": {"amount": "ten"},
    "split": {"attributes": {"model": "gpt-4o", "input_tokens": 1, "output_tokens": 2}},
    "teal": {"resource": "widgets", "attributes": {"colour": "teal"}},
    "mauve": {"resource": "widgets", "attributes": {"colour": "mauve"}},
}
"""Ways to spoil an event: a bad amount (the engine's own check), a token split that does not
add up (the built-in `tokens` batch check), a teal widget (a partner's per-event hook), a mauve
widget (a partner's batch hook)."""


@pytest.mark.parametrize(
    ("spoiled", "index", "expected"),
    [
        ({5: "amount", 3: "teal", 4: "mauve", 2: "split"}, 2, "input_tokens + output_tokens"),
        ({5: "amount", 3: "teal", 4: "mauve"}, 3, "no teal widgets"),
        ({5: "amount", 4: "mauve", 3: "split"}, 3, "input_tokens + output_tokens"),
        ({5: "amount", 4: "mauve"}, 4, "no mauve widgets"),
        ({1: "amount", 4: "mauve", 3: "teal", 2: "split"}, 1, "amount must be an integer"),
        ({6: "teal", 7: "mauve"}, 6, "no teal widgets"),
    ],
)
async def test_the_refusal_of_the_lowest_index_wins_whichever_check_made_it(
    runtime: Runtime,
    organization: Organization,
    spoiled: dict[int, str],
    index: int,
    expected: str,
) -> None:
    batch = []
    for position in range(8):
        fields: dict[str, Any] = {"resource": "tokens", "amount": 10}
        fields.update(SPOILERS[spoiled[position]] if position in spoiled else {})
        batch.append(UsageInput(idempotency_key=f"k{position}", **fields))
    with pytest.raises(UsageRejected) as caught:
        runtime.engine.prepare(organization, batch)
    assert caught.value.message.startswith(f"events[{index}]: {expected}"), caught.value.message
    assert caught.value.index == index


async def test_the_per_event_hook_is_called_once_per_event_only_when_a_plugin_has_it(
    runtime: Runtime, organization: Organization, database_url: str, clock: FrozenClock
) -> None:
    each_widget = plugin(runtime, EachWidget)
    batch = [tokens(f"t{i}") for i in range(500)] + [widget(f"w{i}") for i in range(500)]
    each_widget.calls = 0
    prepared = runtime.engine.prepare(organization, batch)
    assert [event.idempotency_key for event in prepared] == [u.idempotency_key for u in batch]
    assert each_widget.calls == 1000

    built_in_only = build_runtime(Settings(database_url=database_url), clock)
    try:
        assert built_in_only.engine.plugins.hook.tally_validate_usage.get_hookimpls() == []
        assert {
            impl.plugin_name
            for impl in built_in_only.engine.plugins.hook.tally_validate_batch.get_hookimpls()
        } == {"tokens", "documents"}
    finally:
        await built_in_only.db.dispose()


async def test_a_bad_event_deep_in_a_large_batch_is_named(
    runtime: Runtime, organization: Organization
) -> None:
    batch = [tokens(f"t{i}", input_tokens=4, output_tokens=6) for i in range(1000)]
    batch[700] = tokens("t700", input_tokens=4, output_tokens=5)
    with pytest.raises(UsageRejected) as caught:
        runtime.engine.prepare(organization, batch)
    assert caught.value.message == (
        "events[700]: input_tokens + output_tokens (4 + 5) must equal amount (10)"
    )
    batch[700] = UsageInput("documents", 1, "d", attributes={"kind": "poster"})
    with pytest.raises(UsageRejected, match=r"^events\[700\]: document kind must be one of"):
        runtime.engine.prepare(organization, batch)


async def test_events_are_priced_per_model_in_one_pass(
    runtime: Runtime, organization: Organization
) -> None:
    prices = runtime.engine.prices
    batch = [
        tokens("a", model="gpt-4o"),
        tokens("b", model="gpt-4o-mini", input_tokens=3, output_tokens=7),
        tokens("c", model="no-such-model"),
        UsageInput("tokens", 10, "d", attributes={"action": "chat_reply"}),
    ]
    prepared = runtime.engine.prepare(organization, batch)
    assert [event.cost_micros for event in prepared] == [
        prices.cost_micros("gpt-4o", 10, None, None),
        prices.cost_micros("gpt-4o-mini", 10, 3, 7),
        None,
        None,
    ]
    assert prepared[0].cost_micros is not None and prepared[0].cost_micros > 0


def _decimal_cost(price: ModelPrice, amount: int, split: tuple[int, int] | None) -> int:
    with localcontext(prec=80):
        if split is None:
            cost = price.input * amount
        else:
            cost = price.input * split[0] + price.output * split[1]
        return int(cost.to_integral_value(rounding=ROUND_HALF_UP))


prices = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False)


@given(
    input_price=prices,
    output_price=prices,
    amount=st.integers(min_value=-(2**62), max_value=2**62),
    split=st.none() | st.tuples(st.integers(0, 2**62), st.integers(0, 2**62)),
)
def test_a_cost_is_the_exact_decimal_product_rounded_half_up(
    input_price: Decimal, output_price: Decimal, amount: int, split: tuple[int, int] | None
) -> None:
    price = ModelPrice(input_price, output_price)
    expected = _decimal_cost(price, amount, split)
    assert price.cost_micros(amount, *(split or (None, None))) == expected
