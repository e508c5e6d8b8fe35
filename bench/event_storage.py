"""Event storage: bytes per stored usage event, indexes included, against the 200-byte target.

Records 1,000,000 token events (by default) through Tally's real write path, in-process:
`UsageService.record` (validation, pricing, the ledger function `tally_apply_usage` on
PostgreSQL), in batches, from a few concurrent tasks, into a fresh PostgreSQL database,
twice: for one organization, then (another fresh database) spread over 1,000 organizations,
their batches interleaved. Each event is like the other benchmarks' (`resource` tokens, an
amount, a `model` and an `action` among several) with an idempotency key of 16 random hex
characters, so that keys land anywhere in the index, as real request ids do. Then measures
`usage_events` on disk: every partition's heap, indexes, TOAST and free-space and visibility
maps (`pg_total_relation_size`), divided by the events it holds. Checks that every event was
accepted, that the counters equal the accepted amounts, that the events stored are exactly
those, and that a replayed batch is all `duplicate` and counts nothing. Exits 1 when a check
fails (a missed target is reported, not failed).

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES):

    .venv/bin/python bench/event_storage.py                       # 1,000,000 events, ~3 min
    .venv/bin/python bench/event_storage.py --events 200000 --key-chars 36
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from harness import BenchFailure, check, deployment, main_guard, say, stored_usage, target

from core.config import Settings
from core.orgs import Organization
from limits import UsageInput
from tally.runtime import Runtime, build_runtime

TARGET_BYTES = 200.0
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "local-llama", "mistral-large")
ACTIONS = ("chat_reply", "summary", "embedding")
TASKS = 4
"""Batches recorded at once (each its own transaction, as concurrent requests are)."""
SIZE_SQL = """
SELECT count(*) AS partitions, coalesce(sum(pg_total_relation_size(inhrelid)), 0) AS total,
       coalesce(sum(pg_relation_size(inhrelid)), 0) AS heap,
       coalesce(sum(pg_indexes_size(inhrelid)), 0) AS indexes
FROM pg_inherits WHERE inhparent = 'usage_events'::regclass
"""


@dataclass(frozen=True)
class Scenario:
    label: str
    organizations: int
    batch: int


@dataclass(frozen=True)
class Measured:
    events: int
    partitions: int
    total: int
    heap: int
    indexes: int

    def per_event(self, part: int) -> float:
        return part / self.events


def _key(number: int, chars: int) -> str:
    """A key that looks random (a hash of `number`), `chars` long."""
    digest = hashlib.blake2b(number.to_bytes(8, "little"), digest_size=32).hexdigest()
    return (digest * (chars // len(digest) + 1))[:chars]


def _batches(scenario: Scenario, events: int, chars: int) -> Iterator[tuple[int, list[UsageInput]]]:
    """(organization index, batch) pairs, organizations taking turns."""
    numbers = iter(range(events))
    for turn in itertools.count():
        batch = [
            UsageInput(
                "tokens",
                50 + number * 7919 % 1950,
                _key(number, chars),
                None,
                {"model": MODELS[number % len(MODELS)], "action": ACTIONS[number % len(ACTIONS)]},
            )
            for number in itertools.islice(numbers, scenario.batch)
        ]
        if not batch:
            return
        yield turn % scenario.organizations, batch


async def _record(
    runtime: Runtime,
    organizations: Sequence[Organization],
    batches: Iterator[tuple[int, list[UsageInput]]],
) -> tuple[int, int]:
    """Record every batch, TASKS at a time; (events accepted, their amounts)."""
    accepted, amounts, started, done = 0, 0, time.perf_counter(), 0

    async def worker() -> None:
        nonlocal accepted, amounts, done
        for index, batch in batches:
            decisions = await runtime.usage.record(organizations[index], batch)
            for decision, event in zip(decisions, batch, strict=True):
                if decision.status == "accepted":
                    accepted += 1
                    amounts += event.amount
            done += len(batch)
            if done % 100_000 < len(batch):
                rate = done / (time.perf_counter() - started)
                say(f"  {done:,} events recorded ({rate:,.0f}/s)")

    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return accepted, amounts


async def _replay(runtime: Runtime, organization: Organization, batch: list[UsageInput]) -> bool:
    decisions = await runtime.usage.record(organization, batch)
    return all(decision.status == "duplicate" for decision in decisions)


async def _organizations(runtime: Runtime, ids: Sequence[str]) -> list[Organization]:
    async with runtime.db.read() as session:
        found = [await session.get(Organization, organization_id) for organization_id in ids]
    if any(organization is None for organization in found):
        raise BenchFailure("an organization opened for the benchmark is missing")
    return [organization for organization in found if organization is not None]


def _count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM usage_events").fetchone()
    assert row is not None
    return int(row[0])


def _measure(url: str) -> Measured:
    """The table's size once vacuumed (its free-space and visibility maps made, as
    autovacuum would), never before the load: statistics of a near-empty table would mislead
    the planner for the whole load."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) usage_events")
        row = connection.execute(SIZE_SQL).fetchone()
        count = connection.execute("SELECT count(*) FROM usage_events").fetchone()
    assert row is not None and count is not None
    partitions, total, heap, indexes = (int(value) for value in row)
    return Measured(int(count[0]), partitions, total, heap, indexes)


def _scenario(scenario: Scenario, events: int, chars: int) -> Measured:
    with deployment(f"storage{scenario.organizations}") as bench:
        if scenario.organizations == 1:
            ids = [bench.create_org("Bench storage", "bench-hard")["organization_id"]]
        else:
            opened = bench.open_orgs(scenario.organizations, "bench-hard", "Bench storage")
            ids = [org["organization_id"] for org in opened]
        before = _count(bench.url)  # the seats taken by the owners
        usage_before = stored_usage(bench.url, ids)
        runtime = build_runtime(Settings.from_env(bench.env))

        async def load() -> tuple[int, int, bool]:
            try:
                organizations = await _organizations(runtime, ids)
                accepted, amounts = await _record(
                    runtime, organizations, _batches(scenario, events, chars)
                )
                first = next(_batches(scenario, events, chars))[1]
                return accepted, amounts, await _replay(runtime, organizations[0], first)
            finally:
                await runtime.db.dispose()

        say(f"{scenario.label}: {events:,} events in batches of {scenario.batch}, {TASKS} tasks")
        started = time.perf_counter()
        accepted, amounts, replayed = asyncio.run(load())
        say(f"{scenario.label}: recorded in {time.perf_counter() - started:.1f}s")
        usage = stored_usage(bench.url, ids)
        counted = sum(u.counter for u in usage.values()) - sum(
            u.counter for u in usage_before.values()
        )
        stored = sum(u.events for u in usage.values()) - sum(
            u.events for u in usage_before.values()
        )
        check(accepted == events, f"{scenario.label}: {events:,} events accepted")
        check(
            counted == amounts and stored == events,
            f"{scenario.label}: counters +{counted:,} == accepted amounts, {stored:,} stored",
        )
        check(replayed, f"{scenario.label}: a replayed batch is all duplicate")
        check(
            stored_usage(bench.url, ids) == usage,
            f"{scenario.label}: the replay counted and stored nothing",
        )
        measured = _measure(bench.url)
        check(
            measured.events == before + events,
            f"{scenario.label}: usage_events holds {measured.events:,} events "
            f"({before:,} seats taken at opening)",
        )
        return measured


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="per scenario")
    parser.add_argument("--key-chars", type=int, default=16, help="idempotency key length")
    parser.add_argument("--organizations", type=int, default=1_000, help="the spread scenario")
    args = parser.parse_args()
    if not 1_000 <= args.events <= 10_000_000 or not 1 <= args.key_chars <= 200:
        parser.error("--events must be 1,000 to 10,000,000 and --key-chars 1 to 200")
    return args


def run() -> None:
    args = _arguments()
    scenarios = (
        Scenario("one organization", 1, 1_000),
        Scenario(f"{args.organizations:,} organizations", args.organizations, 100),
    )
    results = [(s, _scenario(s, args.events, args.key_chars)) for s in scenarios]
    print(
        f"\nevent storage ({args.events:,} token events per scenario, model and action, "
        f"{args.key_chars}-character keys, recorded through UsageService.record on "
        "PostgreSQL), usage_events on disk per event:"
    )
    for scenario, measured in results:
        print(
            "  "
            + target(
                f"{scenario.label}: bytes per event", measured.per_event(measured.total),
                TARGET_BYTES, at_most=True,
            )
        )  # fmt: skip
        print(
            f"    heap {measured.per_event(measured.heap):.1f} + indexes "
            f"{measured.per_event(measured.indexes):.1f} + maps and TOAST "
            f"{measured.per_event(measured.total - measured.heap - measured.indexes):.1f}; "
            f"{measured.events:,} events in {measured.partitions} partition(s), "
            f"{measured.total / 2**20:,.1f} MiB"
        )
    print("  all accepted, counters == accepted amounts, replays count nothing: ok")


if __name__ == "__main__":
    sys.exit(main_guard(run))
