"""usageStats over 5,000,000 token events (90 days, by day, Europe/Paris): p50/p95 latency.

Builds a fresh PostgreSQL database (`tally create-org`, which migrates), fills `usage_events`
with 5M token events of one organization spread evenly over the last 90 days (5 models, one
of them unpriced, 4 actions, amounts 50 to 1,999, cost at the built-in model prices) with
`INSERT ... SELECT generate_series(...)`, then `usage_rollups` from them with one
`INSERT ... SELECT ... GROUP BY` mirroring what the engine writes (UTC hour, model, action,
amount, cost_micros, unpriced_amount, events). Then, per run, 200 sequential GraphQL requests
`organization { usageStats(from, to, granularity: DAY, timezone: "Europe/Paris") {...} }` to
`tally serve --workers 2` (owner key), and the comparison: the same answer computed from one
brute-force SQL query per request over the raw events (GROUP BY local day, model, action;
Python adds up the three views), 20 per run by default since each takes ~8 s on 5M rows
(`--brute-requests 200` for 200). Checks that both give the same totals, per day, per model,
per action and the same total cost; exits 1 when they differ. The data takes ~4 minutes.

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES):

    .venv/bin/python bench/usage_stats.py                  # 3 runs: 200 usageStats, 20 brute
    .venv/bin/python bench/usage_stats.py --events 500000 --requests 50   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import psycopg
from harness import BenchFailure, check, deployment, main_guard, median, percentile, say, target

from billing.money import Money, minor_digits
from core.config import Settings
from limits.pricing import PriceTable

TARGET_P95_MS = 50.0
TIMEZONE = "Europe/Paris"
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "mistral-large", "local-llama")
ACTIONS = ("chat_reply", "summary", "embedding", "product_description")
QUERY = """query Stats($from: DateTime!, $to: DateTime!) { organization {
  usageStats(from: $from, to: $to, granularity: DAY, timezone: "Europe/Paris") {
    totalTokens totalCost { formatted } tokensOverTime { start tokens }
    byModel { key tokens share } byAction { key tokens share } } } }"""
GENERATE = """
INSERT INTO usage_events (id, organization_id, resource, idempotency_key, amount, period_start,
    occurred_at, recorded_at, used_after, limit_value, model, action, cost_micros, attributes)
SELECT md5(g::text), %(org)s, 'tokens', 'gen-' || g, amount,
       date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', at, at, g, NULL,
       (%(models)s::text[])[1 + g %% 5], (%(actions)s::text[])[1 + (g / 5) %% 4],
       round((%(prices)s::numeric[])[1 + g %% 5] * amount / 1000000)::bigint, '{}'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT %(start)s::timestamptz + (g - 1) * %(step)s::interval AS at,
                     50 + (g * 7919) %% 1950 AS amount) AS e
"""
ROLLUP = """
INSERT INTO usage_rollups (organization_id, resource, hour, model, action, amount, cost_micros,
                           unpriced_amount, events)
SELECT organization_id, resource, date_trunc('hour', occurred_at), coalesce(model, ''),
       coalesce(action, ''), sum(amount), sum(coalesce(cost_micros, 0)),
       sum(CASE WHEN cost_micros IS NULL THEN amount ELSE 0 END), count(*)
FROM usage_events WHERE organization_id = %(org)s AND resource = 'tokens'
GROUP BY 1, 2, 3, 4, 5
"""
BRUTE = """
SELECT (occurred_at AT TIME ZONE 'Europe/Paris')::date, model, action, sum(amount),
       sum(coalesce(cost_micros, 0))
FROM usage_events WHERE organization_id = %(org)s AND resource = 'tokens'
  AND occurred_at >= %(from)s AND occurred_at < %(to)s
GROUP BY 1, 2, 3
"""


def _generate(url: str, org: str, events: int, start: datetime) -> None:
    prices = PriceTable.load(Settings.from_env().model_prices_path)
    per_million = [prices.cost_micros(m, 10**6, None, None) for m in MODELS]
    chunk = 1_000_000
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET synchronous_commit = off")  # the data load only
        connection.execute("SET TimeZone = 'UTC'")
        for first in range(1, events + 1, chunk):
            last = min(events, first + chunk - 1)
            began = time.perf_counter()
            connection.execute(
                GENERATE,
                {
                    "org": org,
                    "models": list(MODELS),
                    "actions": list(ACTIONS),
                    "prices": per_million,
                    "first": first,
                    "last": last,
                    "start": start,
                    "step": timedelta(days=90) / events,
                },
            )
            say(f"  events {first:,}..{last:,} inserted ({time.perf_counter() - began:.0f}s)")
        began = time.perf_counter()
        rows = connection.execute(ROLLUP, {"org": org}).rowcount
        say(f"  {rows:,} hourly rollups from the events ({time.perf_counter() - began:.0f}s)")
        connection.execute("VACUUM ANALYZE usage_events")
        connection.execute("VACUUM ANALYZE usage_rollups")


def _money(micros: int, currency: str) -> str:
    minor = Decimal(micros).scaleb(minor_digits(currency) - 6)
    return Money(int(minor.to_integral_value(rounding=ROUND_HALF_UP)), currency).formatted


def _graphql_answer(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "total": stats["totalTokens"],
        "cost": stats["totalCost"]["formatted"],
        "days": {p["start"][:10]: p["tokens"] for p in stats["tokensOverTime"] if p["tokens"]},
        "models": {share["key"]: share["tokens"] for share in stats["byModel"]},
        "actions": {share["key"]: share["tokens"] for share in stats["byAction"]},
    }


def _brute_answer(rows: list[tuple[Any, ...]], currency: str) -> dict[str, Any]:
    days: dict[str, int] = defaultdict(int)
    models: dict[str, int] = defaultdict(int)
    actions: dict[str, int] = defaultdict(int)
    cost = 0
    for day, model, action, amount, micros in rows:
        days[day.isoformat()] += int(amount)
        models[model or "unknown"] += int(amount)
        actions[action or "unknown"] += int(amount)
        cost += int(micros)
    total = sum(days.values())
    return {
        "total": total,
        "cost": _money(cost, currency),
        "days": dict(days),
        "models": dict(models),
        "actions": dict(actions),
    }


def _timed(count: int, call: Any) -> tuple[list[float], Any]:
    latencies, answer = [], None
    for _ in range(count):
        began = time.perf_counter()
        answer = call()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, answer


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=200, help="usageStats requests per run")
    parser.add_argument(
        "--brute-requests", type=int, default=20, help="brute-force queries per run"
    )
    return parser.parse_args()


def run() -> None:
    args = _arguments()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=90)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    currency = PriceTable.load(Settings.from_env().model_prices_path).currency
    fast, slow = [], []
    with deployment("stats") as bench:
        url = bench.url
        org = bench.create_org("Bench stats", "bench-hard")
        say(f"generating {args.events:,} token events over 90 days")
        _generate(url, org["organization_id"], args.events, start)
        headers = {"Authorization": f"Bearer {org['owner_api_key']}"}
        body = {"query": QUERY, "variables": window}
        params = {"org": org["organization_id"], "from": start, "to": end}
        with (
            bench.tally_server() as base,
            httpx.Client(base_url=base, headers=headers, timeout=60) as http,
            psycopg.connect(url) as connection,
        ):

            def graphql() -> dict[str, Any]:
                answer = http.post("/graphql", json=body).json()
                if "errors" in answer:
                    raise BenchFailure(f"GraphQL errors: {answer['errors']}")
                return _graphql_answer(answer["data"]["organization"]["usageStats"])

            def brute() -> dict[str, Any]:
                return _brute_answer(connection.execute(BRUTE, params).fetchall(), currency)

            _timed(10, graphql)
            _timed(1, brute)
            for index in range(1, args.runs + 1):
                latencies, answer = _timed(args.requests, graphql)
                fast.append((percentile(latencies, 0.5), percentile(latencies, 0.95)))
                latencies, expected = _timed(args.brute_requests, brute)
                slow.append((percentile(latencies, 0.5), percentile(latencies, 0.95)))
                say(
                    f"run {index}: usageStats p50 {fast[-1][0]:.1f} ms p95 {fast[-1][1]:.1f} ms "
                    f"| brute-force GROUP BY p50 {slow[-1][0]:.0f} ms p95 {slow[-1][1]:.0f} ms "
                    f"| ratio (p95) {slow[-1][1] / fast[-1][1]:.0f}x"
                )
                check(
                    answer == expected and expected["total"] > 0,
                    f"run {index}: same answer: {expected['total']:,} tokens, "
                    f"{expected['cost']}, {len(expected['days'])} days, per model and action",
                )
    p95 = median([p for _, p in fast])
    brute_p95 = median([p for _, p in slow])
    print(
        f"\nusageStats over {args.events:,} events, 90 days by day in {TIMEZONE}, "
        f"{args.requests} sequential requests per run, median of {args.runs} runs:"
    )
    print(f"  usageStats p50: {median([p for p, _ in fast]):.1f} ms")
    print("  " + target("usageStats p95 (ms)", p95, TARGET_P95_MS, at_most=True))
    print(
        f"  brute-force GROUP BY over the raw events ({args.brute_requests} per run): "
        f"p50 {median([p for p, _ in slow]):.0f} ms, p95 {brute_p95:.0f} ms"
    )
    print(f"  ratio (brute-force p95 / usageStats p95): {brute_p95 / p95:.0f}x")
    print("  same totals, days, models, actions and cost: ok")


if __name__ == "__main__":
    sys.exit(main_guard(run))
