from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from core.clock import FrozenClock
from limits import UsageInput, UsageRejected
from tally.runtime import Runtime
from tests.limits.conftest import consume, open_tiny, used

pytestmark = pytest.mark.anyio


async def test_consume_within_the_limit_is_accepted(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    decision = await consume(runtime, account, "tokens", 40, "a", model="gpt-4o")
    assert (decision.status, decision.used, decision.limit, decision.remaining) == (
        "accepted",
        40,
        100,
        60,
    )
    assert await used(runtime, account, "tokens") == 40


async def test_hard_limit_is_all_or_nothing(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 90, "a")
    refused = await consume(runtime, account, "tokens", 11, "b")
    assert (refused.status, refused.used, refused.requested) == ("rejected", 90, 11)
    assert await used(runtime, account, "tokens") == 90
    exact = await consume(runtime, account, "tokens", 10, "b")
    assert (exact.status, exact.used, exact.remaining) == ("accepted", 100, 0)


async def test_an_amount_larger_than_the_limit_is_refused_on_an_empty_counter(
    runtime: Runtime,
) -> None:
    account = await open_tiny(runtime)
    refused = await consume(runtime, account, "tokens", 101, "a")
    assert (refused.status, refused.used) == ("rejected", 0)


async def test_check_records_nothing(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    async with runtime.db.read() as session:
        ok, too_much = await runtime.engine.check(
            session,
            account.organization,
            [UsageInput("tokens", 100, "a"), UsageInput("tokens", 101, "b")],
        )
    assert (ok.status, ok.used) == ("accepted", 100)
    assert (too_much.status, too_much.used) == ("rejected", 100)
    assert await used(runtime, account, "tokens") == 0


async def test_replay_returns_the_original_decision_and_counts_once(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    first = await consume(runtime, account, "tokens", 30, "same")
    await consume(runtime, account, "tokens", 5, "other")
    again = await consume(runtime, account, "tokens", 30, "same")
    assert again.status == "duplicate"
    assert (again.used, again.requested) == (first.used, 30)
    assert await used(runtime, account, "tokens") == 35


async def test_replay_of_an_accepted_event_is_a_duplicate_even_when_full(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 100, "fill")
    assert (await consume(runtime, account, "tokens", 100, "fill")).status == "duplicate"


async def test_soft_policy_allows_and_flags_over_limit(runtime: Runtime) -> None:
    account = await open_tiny(runtime, plan="soft")
    decision = await consume(runtime, account, "tokens", 150, "a")
    assert (decision.status, decision.used, decision.over_limit) == ("accepted", 150, True)
    assert decision.remaining == 0


async def test_gauge_goes_up_and_down_and_never_below_zero(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    assert (await consume(runtime, account, "agents", 2, "up")).status == "accepted"
    assert (await consume(runtime, account, "agents", 1, "third")).status == "rejected"
    assert (await consume(runtime, account, "agents", -1, "down")).used == 1
    assert (await consume(runtime, account, "agents", -2, "too-far")).status == "rejected"
    assert await used(runtime, account, "agents") == 1


async def test_release_on_an_untouched_gauge_is_refused(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    refused = await consume(runtime, account, "documents", -1, "release", kind="faq")
    assert (refused.status, refused.used) == ("rejected", 0)


@pytest.mark.parametrize(
    ("resource", "amount", "attributes", "code"),
    [
        ("nope", 1, {}, "UNKNOWN_RESOURCE"),
        ("tokens", -5, {}, "INVALID_AMOUNT"),
        ("tokens", 1.5, {}, "INVALID_AMOUNT"),
        ("tokens", True, {}, "INVALID_AMOUNT"),
        ("tokens", 10, {"colour": "red"}, "INVALID_ATTRIBUTE"),
        ("documents", 1, {"kind": "video"}, "INVALID_ATTRIBUTE"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_written(
    runtime: Runtime, resource: str, amount: object, attributes: dict[str, object], code: str
) -> None:
    account = await open_tiny(runtime)
    with pytest.raises(UsageRejected) as caught:
        await consume(runtime, account, resource, amount, "bad", **attributes)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert await used(runtime, account, "tokens") == 0


async def test_metered_usage_resets_at_the_anchor_and_gauges_do_not(
    runtime: Runtime, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 100, "march")
    await consume(runtime, account, "agents", 1, "agent")
    clock.set(runtime.engine.period(account.organization).end - timedelta(microseconds=1))
    assert await used(runtime, account, "tokens") == 100
    clock.advance(timedelta(microseconds=1))
    assert await used(runtime, account, "tokens") == 0
    assert await used(runtime, account, "agents") == 1
    assert (await consume(runtime, account, "tokens", 100, "april")).status == "accepted"


async def test_percent_used_is_the_fullest_meter(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 10, "t")
    await consume(runtime, account, "documents", 3, "d", kind="product")
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, account.organization)
    assert snapshot.get("documents").percent == 100.0
    assert snapshot.percent_used == 100.0


async def test_concurrent_consumers_never_pass_the_limit_nor_refuse_while_room_remains(
    runtime: Runtime,
) -> None:
    account = await open_tiny(runtime)
    decisions = await asyncio.gather(
        *(consume(runtime, account, "tokens", 1, f"unit-{i}") for i in range(160))
    )
    accepted = [d for d in decisions if d.status == "accepted"]
    assert len(accepted) == 100
    assert sorted(d.used for d in accepted) == list(range(1, 101))
    assert await used(runtime, account, "tokens") == 100


async def test_concurrent_mixed_amounts_add_up_exactly(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    rng = random.Random(7)
    amounts = [rng.randint(1, 9) for _ in range(80)]
    decisions = await asyncio.gather(
        *(
            consume(runtime, account, "tokens", amount, f"mix-{i}")
            for i, amount in enumerate(amounts)
        )
    )
    final = await used(runtime, account, "tokens")
    accepted = sum(d.requested for d in decisions if d.status == "accepted")
    assert accepted == final <= 100
    room = 100 - final
    assert all(d.requested > room for d in decisions if d.status == "rejected")


async def test_concurrent_replays_of_one_key_count_once(runtime: Runtime) -> None:
    account = await open_tiny(runtime)
    decisions = await asyncio.gather(
        *(consume(runtime, account, "tokens", 7, "the-key") for _ in range(20))
    )
    assert sorted(d.status for d in decisions).count("accepted") == 1
    assert {d.status for d in decisions} == {"accepted", "duplicate"}
    assert await used(runtime, account, "tokens") == 7


async def test_one_key_racing_on_two_counters_counts_once(runtime: Runtime) -> None:
    account = await open_tiny(runtime, plan="soft")
    for round_ in range(5):
        key = f"shared-{round_}"
        answers = await asyncio.gather(
            consume(runtime, account, "tokens", 3, key),
            consume(runtime, account, "agents", 1, key),
            return_exceptions=True,
        )
        assert sorted(type(answer).__name__ for answer in answers) == [
            "Decision",
            "IdempotencyKeyReused",
        ]
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, account.organization)
    assert snapshot.get("tokens").used + snapshot.get("agents").used * 3 == 15


async def test_the_group_committer_retries_a_key_race_as_a_whole(runtime: Runtime) -> None:
    from limits.batcher import GroupCommitter

    account = await open_tiny(runtime, plan="soft")
    committer = GroupCommitter(runtime.db, runtime.engine)
    for round_ in range(5):
        key = f"batched-{round_}"
        tokens, agents = runtime.engine.prepare(
            account.organization,
            [UsageInput("tokens", 3, key), UsageInput("agents", 1, key)],
        )
        other = GroupCommitter(runtime.db, runtime.engine)
        first, second = await asyncio.gather(
            committer.apply(account.organization, tokens),
            other.apply(account.organization, agents),
        )
        assert sorted([first.status, second.status]) == ["accepted", "reused"]
