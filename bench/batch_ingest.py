"""Batch ingestion: events/s through `POST /v1/usage` with 1000-event batches.

Measures concurrent clients (httpx.AsyncClient, one connection each) posting pre-generated
1000-event batches (unique idempotency keys, several models and actions, amounts 1 to 9) to
`tally serve --workers 2` on a fresh PostgreSQL database, for an organization on a hard plan
limit of 10^12. Checks after each run that every event was answered `accepted`, that the
counter grew by exactly the accepted amounts and that exactly that many events were stored; at
the end, that a replayed batch is all `duplicate` and counts nothing. The ceiling, measured in
the same run, is the database's own bulk insert: the same events written by psycopg straight
into `usage_events` (one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING` per batch,
one transaction each, same concurrency) for a second organization. Exits 1 when a check fails.

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES):

    .venv/bin/python bench/batch_ingest.py                 # 3 runs, 8 clients, 160 batches each
    .venv/bin/python bench/batch_ingest.py --clients 4 --batches 80
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
from harness import BenchFailure, check, deployment, main_guard, median, say, target

BATCH = 1000
TARGET_EVENTS_PER_S = 50_000
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "local-llama")
ACTIONS = ("chat_reply", "summary", "embedding")
COLUMNS = "id, organization_id, resource, idempotency_key, amount, period_start, occurred_at, "
COLUMNS += "recorded_at, used_after, model, action, attributes"
CEILING_SQL = f"""
INSERT INTO usage_events ({COLUMNS})
SELECT id, %(org)s, 'tokens', key, amount, %(period)s, %(now)s, %(now)s, 0, model, action, '{{}}'
FROM unnest(%(ids)s::text[], %(keys)s::text[], %(amounts)s::bigint[], %(models)s::text[],
            %(actions)s::text[]) AS e(id, key, amount, model, action)
ON CONFLICT (organization_id, idempotency_key) DO NOTHING
"""

Batch = list[tuple[str, int, str, str]]


def _batches(tag: str, count: int) -> list[Batch]:
    return [
        [
            (f"{tag}-{b}-{i}", 1 + i % 9, MODELS[i % len(MODELS)], ACTIONS[i % len(ACTIONS)])
            for i in range(BATCH)
        ]
        for b in range(count)
    ]


def _body(batch: Batch) -> bytes:
    events = [
        {"resource": "tokens", "amount": amount, "idempotency_key": key, "model": m, "action": a}
        for key, amount, m, a in batch
    ]
    return json.dumps({"events": events}).encode()


async def _post_all(
    base: str, key: str, bodies: list[tuple[bytes, Batch]], clients: int
) -> dict[str, int]:
    """Post every body with `clients` concurrent clients; returns statuses and accepted amounts."""
    pending = list(reversed(bodies))
    seen = {"accepted": 0, "duplicate": 0, "rejected": 0, "amount": 0}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as http:
            while pending:
                body, batch = pending.pop()
                response = await http.post("/v1/usage", content=body)
                if response.status_code != 200:
                    raise BenchFailure(f"HTTP {response.status_code}: {response.text[:300]}")
                for result, (_, amount, _, _) in zip(
                    response.json()["results"], batch, strict=True
                ):
                    seen[result["status"]] += 1
                    seen["amount"] += amount if result["status"] == "accepted" else 0

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout=600)
    return seen


async def _insert_all(url: str, org: str, batches: list[Batch], clients: int) -> None:
    """The ceiling: the same events straight into usage_events, one transaction per batch."""
    pending = list(reversed(batches))
    now = datetime.now(UTC)
    period = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    async def client() -> None:
        async with await psycopg.AsyncConnection.connect(url) as connection:
            while pending:
                batch = pending.pop()
                params = {
                    "org": org,
                    "period": period,
                    "now": now,
                    "ids": [uuid.uuid4().hex for _ in batch],
                    "keys": [e[0] for e in batch],
                    "amounts": [e[1] for e in batch],
                    "models": [e[2] for e in batch],
                    "actions": [e[3] for e in batch],
                }
                async with connection.transaction():
                    await connection.execute(CEILING_SQL, params)

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout=600)


def _stored(url: str, organization_id: str) -> tuple[int, int]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT (SELECT coalesce(sum(used), 0) FROM usage_counters WHERE organization_id = %s"
            " AND resource = 'tokens'), (SELECT count(*) FROM usage_events"
            " WHERE organization_id = %s)",
            (organization_id, organization_id),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=160, help="1000-event batches per run")
    return parser.parse_args()


def run() -> None:
    args = _arguments()
    rates, roofs, ratios = [], [], []
    with deployment("batch") as bench:
        url = bench.url
        org = bench.create_org("Bench batch", "bench-hard")
        other = bench.create_org("Bench batch ceiling", "bench-hard")
        org_id, key = org["organization_id"], org["service_api_key"]
        with bench.tally_server() as base:
            warm = _batches(f"warm-{os.getpid()}", 2 * args.clients)
            asyncio.run(_post_all(base, key, [(_body(b), b) for b in warm], args.clients))
            for index in range(1, args.runs + 1):
                batches = _batches(f"run{index}-{os.getpid()}", args.batches)
                bodies = [(_body(batch), batch) for batch in batches]
                events = BATCH * args.batches
                say(f"run {index}: {args.batches} batches of {BATCH}, {args.clients} clients")
                used, stored = _stored(url, org_id)
                started = time.perf_counter()
                seen = asyncio.run(_post_all(base, key, bodies, args.clients))
                seconds = time.perf_counter() - started
                now_used, now_stored = _stored(url, org_id)
                check(seen["accepted"] == events, f"run {index}: {events:,} events accepted")
                check(
                    now_used - used == seen["amount"] and now_stored - stored == events,
                    f"run {index}: counter +{now_used - used:,} == accepted amounts, "
                    f"{now_stored - stored:,} events stored",
                )
                started = time.perf_counter()
                asyncio.run(_insert_all(url, other["organization_id"], batches, args.clients))
                roof_seconds = time.perf_counter() - started
                rates.append(events / seconds)
                roofs.append(events / roof_seconds)
                ratios.append(rates[-1] / roofs[-1])
                say(
                    f"run {index}: tally {rates[-1]:,.0f} events/s ({seconds:.2f}s) | ceiling "
                    f"{roofs[-1]:,.0f} events/s ({roof_seconds:.2f}s) | ratio {ratios[-1]:.3f}"
                )
            used, stored = _stored(url, org_id)
            seen = asyncio.run(_post_all(base, key, bodies[:1], 1))
            check(
                seen["duplicate"] == BATCH and _stored(url, org_id) == (used, stored),
                "replayed batch: 1,000 duplicate, counter and events unchanged",
            )
    print(
        f"\nbatch ingestion ({args.clients} clients x 1000-event batches, {args.batches} "
        f"batches per run, tally serve --workers 2, PostgreSQL), median of {args.runs} runs:"
    )
    print("  " + target("events/s", median(rates), TARGET_EVENTS_PER_S))
    print(f"  ceiling (psycopg bulk insert into usage_events): {median(roofs):,.0f} events/s")
    print(f"  ratio to the ceiling: {median(ratios):.3f}")
    print("  counter == accepted amounts, events stored == accepted, replays count nothing: ok")


if __name__ == "__main__":
    sys.exit(main_guard(run))
