"""usageStats over 5,000,000 token events (90 days, by day, Europe/Paris): p50/p95 latency.

Builds a fresh PostgreSQL database (`tally create-org`, which migrates), fills `usage_events`
with 5M token events of one organization spread evenly over the last 90 days (5 models, one
of them unpriced, 4 actions, amounts 50 to 1,999, cost at the built-in model prices) with
`INSERT ... SELECT generate_series(...)`, then the rollups from them as the engine writes
them: `usage_rollups` per quarter hour with one `INSERT ... SELECT ... GROUP BY` over the
events, its hours and UTC days from the quarter hours, and `usage_rollup_totals` from
`usage_rollups`. Then, per run and per time zone (Europe/Paris, the target, and
Asia/Kolkata, whose offset is not a whole hour), 200 sequential GraphQL requests
`organization { usageStats(from, to, granularity: DAY, timezone: ...) {...} }` to
`tally serve --workers 2` (owner key), and the comparison: the same answer computed from one
brute-force SQL query per request over the raw events (GROUP BY local day, model, action;
Python adds up the three views), 20 per run for Europe/Paris by default since each takes
~8 s on 5M rows (`--brute-requests 200` for 200), one for the other zones. Checks that both
give the same totals, per day, per model, per action and the same total cost; exits 1 when
they differ. The data takes ~4 minutes.

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
TIMEZONES = ("Europe/Paris", "Asia/Kolkata")
"""The target's zone first; the others are measured and checked, with no target."""
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "mistral-large", "local-llama")
ACTIONS = ("chat_reply", "summary", "embedding", "product_description")
QUERY = """query Stats($from: DateTime!, $to: DateTime!, $tz: String!) { organization {
  usageStats(from: $from, to: $to, granularity: DAY, timezone: $tz) {
    totalTokens totalCost { formatted } tokensOverTime { start tokens }
    byModel { key tokens share } byAction { key tokens share } } } }"""
REF = "(SELECT ref FROM organization_refs WHERE organization_id = %(org)s)"
GENERATE = f"""
INSERT INTO usage_events (organization_ref, epoch, resource, idempotency_key, amount,
    period_start, occurred_at, used_after, limit_value, model, action, cost_micros)
SELECT {REF}, (SELECT max(epoch) FROM usage_event_epochs), 'tokens', 'gen-' || g, amount,
       CAST(date_trunc('month', at AT TIME ZONE 'UTC') AS date), at, g, NULL,
       (%(models)s::text[])[1 + g %% 5], (%(actions)s::text[])[1 + (g / 5) %% 4],
       round((%(prices)s::numeric[])[1 + g %% 5] * amount / 1000000)::bigint
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT %(start)s::timestamptz + (g - 1) * %(step)s::interval AS at,
                     50 + (g * 7919) %% 1950 AS amount) AS e
"""
ROLLUP_COLUMNS = (
    "organization_id, resource, grain, bucket, model, action, amount, cost_micros, "
    "unpriced_amount, events"
)
SUMS = "sum(amount), sum(cost_micros), sum(unpriced_amount), sum(events)"
ROLLUPS = (
    f"""
INSERT INTO usage_rollups ({ROLLUP_COLUMNS})
SELECT %(org)s, resource, 15,
       date_bin('15 minutes', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
       coalesce(model, ''), coalesce(action, ''), sum(amount), sum(coalesce(cost_micros, 0)),
       sum(CASE WHEN cost_micros IS NULL THEN amount ELSE 0 END), count(*)
FROM usage_events WHERE organization_ref = {REF} AND resource = 'tokens'
GROUP BY 1, 2, 3, 4, 5, 6
""",
    f"""
INSERT INTO usage_rollups ({ROLLUP_COLUMNS})
SELECT organization_id, resource, g.grain,
       date_bin(make_interval(mins => g.grain), bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
       model, action, {SUMS}
FROM usage_rollups CROSS JOIN (VALUES (60), (1440)) AS g (grain)
WHERE organization_id = %(org)s AND resource = 'tokens' AND usage_rollups.grain = 15
GROUP BY 1, 2, 3, 4, 5, 6
""",
    f"""
INSERT INTO usage_rollup_totals (organization_id, resource, grain, bucket, amount, cost_micros,
                                 unpriced_amount, events)
SELECT organization_id, resource, grain, bucket, {SUMS}
FROM usage_rollups WHERE organization_id = %(org)s AND resource = 'tokens'
GROUP BY 1, 2, 3, 4
""",
)
BRUTE = f"""
SELECT (occurred_at AT TIME ZONE %(tz)s)::date, model, action, sum(amount),
       sum(coalesce(cost_micros, 0))
FROM usage_events WHERE organization_ref = {REF} AND resource = 'tokens'
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
        for statement in ROLLUPS:
            began = time.perf_counter()
            rows = connection.execute(statement, {"org": org}).rowcount
            say(f"  {rows:,} rollup rows ({time.perf_counter() - began:.0f}s)")
        for table in ("usage_events", "usage_rollups", "usage_rollup_totals"):
            connection.execute(f"VACUUM ANALYZE {table}")


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
        "--brute-requests",
        type=int,
        default=20,
        help=f"brute-force queries per run in {TIMEZONES[0]} (1 in the other zones)",
    )
    return parser.parse_args()


def run() -> None:
    args = _arguments()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=90)
    currency = PriceTable.load(Settings.from_env().model_prices_path).currency
    fast: dict[str, list[tuple[float, float]]] = {zone: [] for zone in TIMEZONES}
    slow: list[tuple[float, float]] = []
    with deployment("stats") as bench:
        url = bench.url
        org = bench.create_org("Bench stats", "bench-hard")
        say(f"generating {args.events:,} token events over 90 days")
        _generate(url, org["organization_id"], args.events, start)
        headers = {"Authorization": f"Bearer {org['owner_api_key']}"}
        with (
            bench.tally_server() as base,
            httpx.Client(base_url=base, headers=headers, timeout=60) as http,
            psycopg.connect(url) as connection,
        ):

            def graphql(zone: str) -> dict[str, Any]:
                variables = {"from": start.isoformat(), "to": end.isoformat(), "tz": zone}
                answer = http.post("/graphql", json={"query": QUERY, "variables": variables})
                body = answer.json()
                if "errors" in body:
                    raise BenchFailure(f"GraphQL errors: {body['errors']}")
                return _graphql_answer(body["data"]["organization"]["usageStats"])

            def brute(zone: str) -> dict[str, Any]:
                params = {"org": org["organization_id"], "from": start, "to": end, "tz": zone}
                return _brute_answer(connection.execute(BRUTE, params).fetchall(), currency)

            for zone in TIMEZONES:
                _timed(10, lambda zone=zone: graphql(zone))
            _timed(1, lambda: brute(TIMEZONES[0]))
            for index in range(1, args.runs + 1):
                for zone in TIMEZONES:
                    latencies, answer = _timed(args.requests, lambda zone=zone: graphql(zone))
                    fast[zone].append((percentile(latencies, 0.5), percentile(latencies, 0.95)))
                    brutes = args.brute_requests if zone == TIMEZONES[0] else 1
                    latencies, expected = _timed(brutes, lambda zone=zone: brute(zone))
                    if zone == TIMEZONES[0]:
                        slow.append((percentile(latencies, 0.5), percentile(latencies, 0.95)))
                    say(
                        f"run {index}, {zone}: usageStats p50 {fast[zone][-1][0]:.1f} ms "
                        f"p95 {fast[zone][-1][1]:.1f} ms"
                        + (
                            f" | brute-force GROUP BY p50 {slow[-1][0]:.0f} ms p95 "
                            f"{slow[-1][1]:.0f} ms | ratio (p95) "
                            f"{slow[-1][1] / fast[zone][-1][1]:.0f}x"
                            if zone == TIMEZONES[0]
                            else ""
                        )
                    )
                    check(
                        answer == expected and expected["total"] > 0,
                        f"run {index}, {zone}: same answer: {expected['total']:,} tokens, "
                        f"{expected['cost']}, {len(expected['days'])} days, per model and "
                        "action",
                    )
    p95 = median([p for _, p in fast[TIMEZONES[0]]])
    brute_p95 = median([p for _, p in slow])
    print(
        f"\nusageStats over {args.events:,} events, 90 days by day, "
        f"{args.requests} sequential requests per run and zone, median of {args.runs} runs:"
    )
    for zone in TIMEZONES:
        print(
            f"  {zone}: usageStats p50 {median([p for p, _ in fast[zone]]):.1f} ms, "
            f"p95 {median([p for _, p in fast[zone]]):.1f} ms"
        )
    print("  " + target(f"usageStats p95, {TIMEZONES[0]} (ms)", p95, TARGET_P95_MS, at_most=True))
    print(
        f"  brute-force GROUP BY over the raw events, {TIMEZONES[0]} "
        f"({args.brute_requests} per run): p50 {median([p for p, _ in slow]):.0f} ms, "
        f"p95 {brute_p95:.0f} ms"
    )
    print(f"  ratio (brute-force p95 / usageStats p95): {brute_p95 / p95:.0f}x")
    print("  same totals, days, models, actions and cost in every zone: ok")


if __name__ == "__main__":
    sys.exit(main_guard(run))
