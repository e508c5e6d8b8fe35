"""Batch ingestion: events/s through `POST /v1/usage` with 1000-event batches, against COPY.

Measures concurrent clients (httpx.AsyncClient, one connection each) posting pre-generated
1000-event batches (unique idempotency keys, several models and actions, amounts 1 to 9) to
`tally serve --workers 2` on a fresh PostgreSQL database, for an organization on a hard plan
limit of 10^12. Checks after each run that every event was answered `accepted`, that the
counter grew by exactly the accepted amounts and that exactly that many events were stored; at
the end, that a replayed batch is all `duplicate` and counts nothing. The comparison, measured
in the same run: PostgreSQL's `COPY` of the same rows (the rows Tally stored in that run, read
back with the table's columns as `information_schema` lists them) into `bench_copy_events`, a
scratch table created `LIKE usage_events INCLUDING ALL` in the same database (its indexes, not
its partitions), 1000 rows per `COPY`, one transaction each, from as many connections as there
are clients. The scratch table holds the same rows as `usage_events` before every run (the
warm-up's are copied first). Then the RSS of each `tally serve` worker (target <= 150 MB).
Exits 1 when a check fails.

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

import httpx
import psycopg
from harness import (
    BenchFailure,
    check,
    deployment,
    load_average,
    main_guard,
    median,
    say,
    stored_usage,
    target,
    worker_rss,
)
from psycopg import sql

BATCH = 1000
TARGET_EVENTS_PER_S = 50_000
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "local-llama")
ACTIONS = ("chat_reply", "summary", "embedding")
SCRATCH = "bench_copy_events"

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


class CopyCeiling:
    """`COPY` into a scratch copy of `usage_events` of the rows Tally stored, whatever the
    table's columns are."""

    def __init__(self, url: str) -> None:
        self.url = url
        with psycopg.connect(url, autocommit=True) as connection:
            names = connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = 'usage_events' AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position"
            ).fetchall()
            self.columns = sql.SQL(", ").join(sql.Identifier(str(row[0])) for row in names)
            connection.execute(
                sql.SQL("CREATE TABLE {} (LIKE usage_events INCLUDING ALL)").format(
                    sql.Identifier(SCRATCH)
                )
            )
        say(f"COPY comparison: {SCRATCH} LIKE usage_events INCLUDING ALL, {len(names)} columns")

    def rows(self, key_prefix: str) -> list[bytes]:
        """The rows Tally stored whose idempotency key starts with `key_prefix`, as COPY text
        lines (one per row: text COPY escapes newlines inside values)."""
        query = sql.SQL(
            "COPY (SELECT {} FROM usage_events WHERE idempotency_key LIKE {}) TO STDOUT"
        ).format(self.columns, sql.Literal(key_prefix + "%"))
        data = bytearray()
        with (
            psycopg.connect(self.url) as connection,
            connection.cursor() as cursor,
            cursor.copy(query) as copy,
        ):
            for chunk in copy:
                data += chunk
        return bytes(data).splitlines(keepends=True)

    def count(self) -> int:
        with psycopg.connect(self.url) as connection:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCRATCH))
            row = connection.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    async def copy(self, lines: list[bytes], clients: int) -> float:
        """COPY the lines, BATCH per transaction, from `clients` connections; the seconds it
        took (connections opened before the clock starts)."""
        pending = [b"".join(lines[i : i + BATCH]) for i in range(0, len(lines), BATCH)]
        pending.reverse()
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(SCRATCH), self.columns)
        connections = [await psycopg.AsyncConnection.connect(self.url) for _ in range(clients)]

        async def client(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            while pending:
                chunk = pending.pop()
                async with (
                    connection.transaction(),
                    connection.cursor() as cursor,
                    cursor.copy(statement) as copy,
                ):
                    await copy.write(chunk)

        try:
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(client(c) for c in connections)), 600)
            return time.perf_counter() - started
        finally:
            for connection in connections:
                await connection.close()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent HTTP clients and COPY connections (default 8)",
    )
    parser.add_argument(
        "--batches", type=int, default=160, help="1000-event batches per run (default 160)"
    )
    return parser.parse_args()


def run() -> None:
    args = _arguments()
    rates, copies, ratios = [], [], []
    with deployment("batch") as bench:
        url = bench.url
        org = bench.create_org("Bench batch", "bench-hard")
        org_id, key = org["organization_id"], org["service_api_key"]

        def stored() -> tuple[int, int]:
            usage = stored_usage(url, [org_id])[org_id]
            return usage.counter, usage.events

        with bench.tally_process() as tally:
            base = tally.base
            warm_tag = f"warm-{os.getpid()}"
            warm = _batches(warm_tag, 2 * args.clients)
            asyncio.run(_post_all(base, key, [(_body(b), b) for b in warm], args.clients))
            ceiling = CopyCeiling(url)
            asyncio.run(ceiling.copy(ceiling.rows(warm_tag + "-"), args.clients))
            check(
                ceiling.count() == BATCH * len(warm),
                f"warm-up: {BATCH * len(warm):,} events stored, and copied to {SCRATCH}",
            )
            for index in range(1, args.runs + 1):
                tag = f"run{index}-{os.getpid()}"
                batches = _batches(tag, args.batches)
                bodies = [(_body(batch), batch) for batch in batches]
                events = BATCH * args.batches
                say(f"run {index}: {args.batches} batches of {BATCH}, {args.clients} clients")
                used, count = stored()
                started = time.perf_counter()
                seen = asyncio.run(_post_all(base, key, bodies, args.clients))
                seconds = time.perf_counter() - started
                now_used, now_count = stored()
                check(seen["accepted"] == events, f"run {index}: {events:,} events accepted")
                check(
                    now_used - used == seen["amount"] and now_count - count == events,
                    f"run {index}: counter +{now_used - used:,} == accepted amounts, "
                    f"{now_count - count:,} events stored",
                )
                lines = ceiling.rows(tag + "-")
                copied_before = ceiling.count()
                copy_seconds = asyncio.run(ceiling.copy(lines, args.clients))
                check(
                    len(lines) == events and ceiling.count() - copied_before == events,
                    f"run {index}: COPY wrote the {events:,} rows Tally stored",
                )
                rates.append(events / seconds)
                copies.append(events / copy_seconds)
                ratios.append(rates[-1] / copies[-1])
                say(
                    f"run {index}: tally {rates[-1]:,.0f} events/s ({seconds:.2f}s) | COPY "
                    f"{copies[-1]:,.0f} rows/s ({copy_seconds:.2f}s) | ratio {ratios[-1]:.3f}"
                )
            before = stored()
            seen = asyncio.run(_post_all(base, key, bodies[:1], 1))
            check(
                seen["duplicate"] == BATCH and stored() == before,
                "replayed batch: 1,000 duplicate, counter and events unchanged",
            )
            rss = worker_rss(tally)
    print(
        f"\nbatch ingestion ({args.clients} clients x 1000-event batches, {args.batches} "
        f"batches per run, tally serve --workers 2, PostgreSQL), median of {args.runs} runs:"
    )
    print("  " + target("events/s", median(rates), TARGET_EVENTS_PER_S))
    print(
        f"  COPY of the same rows into a copy of usage_events ({args.clients} connections, "
        f"{BATCH} rows per COPY): {median(copies):,.0f} rows/s"
    )
    print(f"  ratio to COPY: {median(ratios):.3f}")
    print("  counter == accepted amounts, events stored == accepted, replays count nothing: ok")
    for line in rss:
        print(f"  {line}")
    print(f"  {load_average()}")


if __name__ == "__main__":
    sys.exit(main_guard(run))
