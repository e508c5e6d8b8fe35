"""Single-event consume over HTTP: accepted consumes/s, p99, and the ratio to a bare ceiling.

Measures `POST /v1/usage` with one token event per request (amount 1, a model, an action, a
unique idempotency key per request: bench/consume.lua) against `tally serve --workers 2` on a
fresh PostgreSQL database, under `wrk -t2 -cC -dSs`. The organization is on a plan whose token
limit is hard and 10^12 (never reached). The ceiling is bench/ceiling_app.py (a bare Starlette
JSON endpoint, uvicorn, 2 workers) under the same wrk load, measured in the same run,
alternating with Tally. Accepted consumes are counted from the database after each run (the
counter, which must equal the number and the sum of the stored events). A last pass on a plan
with a hard limit of 5,000 checks that the counter ends at exactly 5,000 and that every other
answer was a LIMIT_EXCEEDED refusal. Exits 1 when a correctness check fails.

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/postgres; wrk is installed with apt-get when missing):

    .venv/bin/python bench/consume_http.py                      # 3 runs, -t2 -c64 -d10s
    .venv/bin/python bench/consume_http.py --sweep 16,32,64,128,256   # then runs at the best -c
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psycopg
from harness import BIG_LIMIT, check, deployment, main_guard, median, say, target
from wrk import WrkResult, ensure_wrk, run_wrk

SMALL_LIMIT = 5_000
TARGET_RATE = 4_000
TARGET_RATIO = 0.2
TARGET_P99_MS = 50.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sweep", default="", help="comma-separated connection counts")
    return parser.parse_args()


def _stored(url: str, organization_id: str) -> tuple[int, int, int]:
    """(counter, events stored, their amounts summed) for the organization's tokens, read in
    one statement (one snapshot) once requests still in flight after wrk stopped have landed."""
    query = (
        "SELECT (SELECT coalesce(sum(used), 0) FROM usage_counters WHERE organization_id = %(o)s"
        " AND resource = 'tokens'), count(*), coalesce(sum(amount), 0) FROM usage_events"
        " WHERE organization_id = %(o)s AND resource = 'tokens'"
    )
    last: tuple[int, int, int] | None = None
    with psycopg.connect(url, autocommit=True) as connection:
        for _ in range(20):
            row = connection.execute(query, {"o": organization_id}).fetchone()
            assert row is not None
            now = (int(row[0]), int(row[1]), int(row[2]))
            if now == last:
                break
            last = now
            time.sleep(0.5)
    assert last is not None
    return last


def _consume(base: str, key: str, tag: str, args: argparse.Namespace, seconds: int) -> WrkResult:
    return run_wrk(
        base,
        "consume.lua",
        [key, tag],
        threads=args.threads,
        connections=args.connections,
        seconds=seconds,
    )


def _exact(url: str, organization_id: str, label: str) -> int:
    used, events, amounts = _stored(url, organization_id)
    check(used == events == amounts, f"{label}: counter {used:,} == {events:,} events stored")
    check(used <= BIG_LIMIT, f"{label}: over the limit: 0 (counter {used:,} <= {BIG_LIMIT:,})")
    return used


def _small_limit_pass(url: str, base: str, org: dict[str, str], args: argparse.Namespace) -> None:
    """Load on a hard limit of 5,000 until it is reached (at most 20 passes), then one more."""
    seconds = max(5, args.seconds)
    say(f"small-limit pass: hard limit {SMALL_LIMIT:,}, passes of {seconds}s")
    seen = {"accepted": 0, "rejected": 0, "other": 0}
    answers = errors = used = events = passes = 0
    while passes < 20 and (used < SMALL_LIMIT or passes < 2 or not seen["rejected"]):
        passes += 1
        result = _consume(
            base, org["service_api_key"], f"small{passes}-{os.getpid()}", args, seconds
        )
        answers, errors = answers + result.requests, errors + result.errors
        seen = {k: seen[k] + result.lua.get(k, 0) for k in seen}
        used, events, _ = _stored(url, org["organization_id"])
        say(f"  pass {passes}: counter {used:,}, answers so far {seen}")
    check(
        used == events == SMALL_LIMIT,
        f"small limit: counter {used:,} == events {events:,} == limit {SMALL_LIMIT:,}",
    )
    check(seen["accepted"] <= SMALL_LIMIT, f"small limit: {seen['accepted']:,} accepted answers")
    check(seen["other"] == 0 and errors == 0, "small limit: no error answers")
    check(
        seen["rejected"] > 0 and seen["accepted"] + seen["rejected"] == answers,
        f"small limit: every further request refused ({seen['rejected']:,} LIMIT_EXCEEDED)",
    )


def _sweep(base: str, ceiling: str, key: str, args: argparse.Namespace) -> int:
    """One short run per connection count; returns the smallest count whose accepted/s is
    within 10% of the best (beyond that, more connections only add latency)."""
    say("concurrency sweep (one run each, accepted answers/s as wrk saw them)")
    rates: dict[int, float] = {}
    for connections in [int(c) for c in args.sweep.split(",") if c]:
        swept = argparse.Namespace(**{**vars(args), "connections": connections})
        roof = _consume(ceiling, "ceiling", "sweep", swept, args.seconds // 2)
        mine = _consume(base, key, f"sweep{connections}-{os.getpid()}", swept, args.seconds // 2)
        rates[connections] = rate = mine.lua["accepted"] / mine.seconds
        say(
            f"  -c{connections}: tally {rate:,.0f}/s p50 {mine.p50_ms:.1f} ms "
            f"p99 {mine.p99_ms:.1f} ms | ceiling {roof.requests_per_s:,.0f}/s "
            f"p99 {roof.p99_ms:.1f} ms | ratio {rate / roof.requests_per_s:.3f}"
        )
    if not rates:
        return int(args.connections)
    best = min(c for c, rate in rates.items() if rate >= 0.9 * max(rates.values()))
    say(f"best concurrency: -c{best} (within 10% of the most accepted/s); the runs use it")
    return best


def run() -> None:
    args = _arguments()
    ensure_wrk()
    with deployment("consume") as bench:
        url = bench.url
        org = bench.create_org("Bench consume", "bench-hard")
        small = bench.create_org("Bench small limit", "bench-small")
        key = org["service_api_key"]
        with bench.tally_server() as base, bench.ceiling_server() as ceiling:
            say("warm-up: 3s on each server")
            _consume(ceiling, "ceiling", "warm", args, 3)
            _consume(base, key, f"warm-{os.getpid()}", args, 3)
            _exact(url, org["organization_id"], "warm-up")
            if args.sweep:
                args.connections = _sweep(base, ceiling, key, args)
            rates, p99s, roofs, ratios = [], [], [], []
            for index in range(1, args.runs + 1):
                roof = _consume(ceiling, "ceiling", "roof", args, args.seconds)
                before = _stored(url, org["organization_id"])[0]
                mine = _consume(base, key, f"run{index}-{os.getpid()}", args, args.seconds)
                accepted = _exact(url, org["organization_id"], f"run {index}") - before
                check(mine.lua["other"] == 0 and mine.errors == 0, f"run {index}: no errors")
                check(
                    mine.lua["accepted"] <= accepted <= mine.requests + 2 * args.connections,
                    f"run {index}: {mine.lua['accepted']:,} accepted answers, "
                    f"{accepted:,} accepted in the database",
                )
                rate = accepted / mine.seconds
                rates.append(rate)
                p99s.append(mine.p99_ms)
                roofs.append(roof.requests_per_s)
                ratios.append(rate / roof.requests_per_s)
                say(
                    f"run {index}: tally {rate:,.0f} accepted/s, p50 {mine.p50_ms:.1f} ms, "
                    f"p99 {mine.p99_ms:.1f} ms | ceiling {roof.requests_per_s:,.0f} req/s, "
                    f"p99 {roof.p99_ms:.1f} ms | ratio {ratios[-1]:.3f}"
                )
            _small_limit_pass(url, base, small, args)
    load = f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s"
    print(
        f"\nconsume over HTTP ({load}, tally serve --workers 2, PostgreSQL), "
        f"median of {args.runs} runs:"
    )
    print("  " + target("accepted consumes/s", median(rates), TARGET_RATE))
    print("  " + target("p99 latency (ms)", median(p99s), TARGET_P99_MS, at_most=True))
    print(f"  ceiling (bare Starlette, 2 workers): {median(roofs):,.0f} req/s")
    print("  " + target("ratio to the ceiling", median(ratios), TARGET_RATIO))
    print(f"  over the limit: 0 (every run; small limit: counter == {SMALL_LIMIT:,} exactly)")


if __name__ == "__main__":
    sys.exit(main_guard(run))
