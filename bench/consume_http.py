"""Single-event consume over HTTP: accepted consumes/s, p99, and the ratio to a bare ceiling.

Measures `POST /v1/usage` with one token event per request (amount 1, a model, an action, a
unique idempotency key per request: bench/consume.lua) against `tally serve --workers 2` on a
fresh PostgreSQL database, under `wrk -t2 -cC -dSs`, for one organization and, with
`--organizations 1,1000`, the same load spread over 1,000 organizations (one service key each,
taken in turn by every wrk thread; opened by bench/open_orgs.py in one process). Every
organization is on a plan whose token limit is hard and 10^12 (never reached). The ceiling is
bench/ceiling_app.py (a bare Starlette JSON endpoint, uvicorn, 2 workers) under the same wrk
load, measured in the same run, alternating with Tally. Accepted consumes are counted from the
database after each run: every organization's counter must equal the number and the sum of its
stored events, and wrk's accepted answers must not exceed what was stored. A last pass on a
plan with a hard limit of 5,000 checks that the counter ends at exactly 5,000 and that every
other answer was a LIMIT_EXCEEDED refusal. Then the RSS of each `tally serve` worker (target
<= 150 MB). Exits 1 when a correctness check fails.

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/postgres; wrk is installed with apt-get when missing):

    .venv/bin/python bench/consume_http.py                      # 3 runs, -t2 -c64 -d10s
    .venv/bin/python bench/consume_http.py --organizations 1,1000   # both, same runs
    .venv/bin/python bench/consume_http.py --sweep 16,32,64,128,256   # then runs at the best -c
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BIG_LIMIT,
    Usage,
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
from wrk import WrkResult, ensure_wrk, run_wrk, wrk_arguments

SMALL_LIMIT = 5_000
TARGET_RATE = 4_000
TARGET_RATIO = 0.2
TARGET_P99_MS = 50.0
MAX_ORGANIZATIONS = 10_000


@dataclass
class Spread:
    """The organizations one load is spread over (their keys in a file for consume.lua) and
    what each measured run gave."""

    organization_ids: list[str]
    keys: Path
    rates: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        count = len(self.organization_ids)
        return "1 organization" if count == 1 else f"{count:,} organizations"


def _counts(text: str) -> list[int]:
    try:
        counts = list(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or not all(1 <= count <= MAX_ORGANIZATIONS for count in counts):
        raise argparse.ArgumentTypeError(f"counts must be 1 to {MAX_ORGANIZATIONS:,}")
    return counts


def _arguments() -> argparse.Namespace:
    parser = wrk_arguments(__doc__, connections=64)
    parser.add_argument(
        "--organizations",
        type=_counts,
        default=[1],
        help="comma-separated organization counts to spread the load over, each measured in "
        "every run (e.g. 1,1000; default 1)",
    )
    parser.add_argument(
        "--sweep",
        default="",
        help="comma-separated connection counts tried first (one run of half --seconds each, "
        "on the first --organizations); the runs then use the best",
    )
    return parser.parse_args()


def _keys_file(workdir: Path, name: str, keys: list[str]) -> Path:
    path = workdir / f"keys-{name}.txt"
    path.write_text("".join(key + "\n" for key in keys), encoding="utf-8")
    return path


def _consume(base: str, keys: Path, tag: str, args: argparse.Namespace, seconds: int) -> WrkResult:
    return run_wrk(
        base,
        "consume.lua",
        [str(keys), tag],
        threads=args.threads,
        connections=args.connections,
        seconds=seconds,
    )


def _exact(url: str, spread: Spread, label: str) -> dict[str, Usage]:
    """Checks every organization's counter == events stored == their amounts, and none over
    the limit; returns each one's usage."""
    usage = stored_usage(url, spread.organization_ids)
    wrong = [f"{org}: {u}" for org, u in usage.items() if not u.counter == u.events == u.amounts]
    check(
        not wrong,
        f"{label}: counter == events stored == amounts for each of {spread.label} "
        f"(total {_total(usage):,})"
        + (f"; not for {len(wrong)}, e.g. {wrong[0]}" if wrong else ""),
    )
    top = max(u.counter for u in usage.values())
    check(top <= BIG_LIMIT, f"{label}: over the limit: 0 (largest counter {top:,})")
    return usage


def _notes(errors: int, notes: list[str]) -> str:
    """What a failed "no errors" check adds: wrk's socket errors and the odd answers seen."""
    return f" ({errors:,} socket errors or non-2xx; {'; '.join(notes)})" if errors or notes else ""


def _total(usage: dict[str, Usage]) -> int:
    return sum(u.counter for u in usage.values())


def _warm(url: str, base: str, spread: Spread, args: argparse.Namespace) -> None:
    """Passes of 3 s until every organization has consumed (its first event creates its rows
    and fills the caches), at most 20."""
    for passes in range(1, 21):
        _consume(base, spread.keys, f"warm{passes}-{os.getpid()}", args, 3)
        usage = _exact(url, spread, f"warm-up, {spread.label}")
        cold = sum(1 for u in usage.values() if u.counter == 0)
        if not cold:
            break
    warmed = len(usage) - cold
    say(f"warm-up, {spread.label}: {warmed:,} consumed in {passes} pass(es) of 3 s")


def _small_limit_pass(url: str, base: str, small: Spread, args: argparse.Namespace) -> None:
    """Load on a hard limit of 5,000 until it is reached (at most 20 passes), then one more."""
    seconds = max(5, args.seconds)
    say(f"small-limit pass: hard limit {SMALL_LIMIT:,}, passes of {seconds}s")
    seen = {"accepted": 0, "rejected": 0, "other": 0}
    answers = errors = used = events = passes = 0
    notes: list[str] = []
    while passes < 20 and (used < SMALL_LIMIT or passes < 2 or not seen["rejected"]):
        passes += 1
        result = _consume(base, small.keys, f"small{passes}-{os.getpid()}", args, seconds)
        answers, errors = answers + result.requests, errors + result.errors
        notes += result.notes
        seen = {k: seen[k] + result.lua.get(k, 0) for k in seen}
        used, events, _ = stored_usage(url, small.organization_ids)[small.organization_ids[0]]
        say(f"  pass {passes}: counter {used:,}, answers so far {seen}")
    check(
        used == events == SMALL_LIMIT,
        f"small limit: counter {used:,} == events {events:,} == limit {SMALL_LIMIT:,}",
    )
    check(seen["accepted"] <= SMALL_LIMIT, f"small limit: {seen['accepted']:,} accepted answers")
    check(
        seen["other"] == 0 and errors == 0,
        "small limit: no error answers" + _notes(errors, notes),
    )
    check(
        seen["rejected"] > 0 and seen["accepted"] + seen["rejected"] == answers,
        f"small limit: every further request refused ({seen['rejected']:,} LIMIT_EXCEEDED)",
    )


def _sweep(
    base: str, ceiling: str, ceiling_keys: Path, spread: Spread, args: argparse.Namespace
) -> int:
    """One short run per connection count; returns the smallest count whose accepted/s is
    within 10% of the best (beyond that, more connections only add latency)."""
    say(f"concurrency sweep over {spread.label} (one run each, accepted answers/s as wrk saw)")
    rates: dict[int, float] = {}
    for connections in [int(c) for c in args.sweep.split(",") if c]:
        swept = argparse.Namespace(**{**vars(args), "connections": connections})
        roof = _consume(ceiling, ceiling_keys, "sweep", swept, args.seconds // 2)
        tag = f"sweep{connections}-{os.getpid()}"
        mine = _consume(base, spread.keys, tag, swept, args.seconds // 2)
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


def _measure(
    url: str, base: str, spread: Spread, roof: WrkResult, index: int, args: argparse.Namespace
) -> None:
    """One measured run of the load over `spread`, checked and recorded."""
    label = f"run {index}, {spread.label}"
    before = _total(stored_usage(url, spread.organization_ids))
    mine = _consume(base, spread.keys, f"run{index}-{os.getpid()}", args, args.seconds)
    accepted = _total(_exact(url, spread, label)) - before
    check(
        mine.lua["other"] == 0 and mine.errors == 0,
        f"{label}: no errors" + _notes(mine.errors, mine.notes),
    )
    check(
        mine.lua["accepted"] <= accepted <= mine.requests + 2 * args.connections,
        f"{label}: {mine.lua['accepted']:,} accepted answers <= "
        f"{accepted:,} accepted in the database",
    )
    spread.rates.append(accepted / mine.seconds)
    spread.p99s.append(mine.p99_ms)
    spread.ratios.append(spread.rates[-1] / roof.requests_per_s)
    say(
        f"{label}: tally {spread.rates[-1]:,.0f} accepted/s, p50 {mine.p50_ms:.1f} ms, "
        f"p99 {mine.p99_ms:.1f} ms | ceiling {roof.requests_per_s:,.0f} req/s, "
        f"p99 {roof.p99_ms:.1f} ms | ratio {spread.ratios[-1]:.3f}"
    )


def _report(
    spreads: list[Spread], roofs: list[float], rss: list[str], args: argparse.Namespace
) -> None:
    load = f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s"
    print(
        f"\nconsume over HTTP ({load}, tally serve --workers 2, PostgreSQL), "
        f"median of {args.runs} runs:"
    )
    print(f"  ceiling (bare Starlette, 2 workers): {median(roofs):,.0f} req/s")
    for spread in spreads:
        print(f"  {spread.label}:")
        print("    " + target("accepted consumes/s", median(spread.rates), TARGET_RATE))
        print("    " + target("p99 latency (ms)", median(spread.p99s), TARGET_P99_MS, at_most=True))
        print("    " + target("ratio to the ceiling", median(spread.ratios), TARGET_RATIO))
    single = next((s for s in spreads if len(s.organization_ids) == 1), None)
    for spread in spreads:
        if single is not None and spread is not single:
            mine, theirs = median(spread.rates), median(single.rates)
            print(
                f"  spread over {spread.label} >= single: {'yes' if mine >= theirs else 'no'} "
                f"({mine:,.0f} vs {theirs:,.0f} accepted/s, ratio {mine / theirs:.2f})"
            )
    print(f"  over the limit: 0 (every run; small limit: counter == {SMALL_LIMIT:,} exactly)")
    for line in rss:
        print(f"  {line}")
    print(f"  {load_average()}")


def run() -> None:
    args = _arguments()
    ensure_wrk()
    with deployment("consume") as bench:
        url = bench.url
        spreads = []
        for count in args.organizations:
            if count == 1:
                orgs = [bench.create_org("Bench consume", "bench-hard")]
            else:
                orgs = bench.open_orgs(count, "bench-hard", f"Bench spread {count}")
            keys = _keys_file(bench.workdir, str(count), [o["service_api_key"] for o in orgs])
            spreads.append(Spread([o["organization_id"] for o in orgs], keys))
        org = bench.create_org("Bench small limit", "bench-small")
        small_keys = _keys_file(bench.workdir, "small", [org["service_api_key"]])
        small = Spread([org["organization_id"]], small_keys)
        ceiling_keys = _keys_file(bench.workdir, "ceiling", ["ceiling"])
        with bench.tally_process() as tally, bench.ceiling_server() as ceiling:
            say("warm-up: 3s on the ceiling, until every organization consumed on Tally")
            _consume(ceiling, ceiling_keys, "warm", args, 3)
            for spread in spreads:
                _warm(url, tally.base, spread, args)
            if args.sweep:
                args.connections = _sweep(tally.base, ceiling, ceiling_keys, spreads[0], args)
            roofs = []
            for index in range(1, args.runs + 1):
                roof = _consume(ceiling, ceiling_keys, "roof", args, args.seconds)
                roofs.append(roof.requests_per_s)
                for spread in spreads:
                    _measure(url, tally.base, spread, roof, index, args)
            _small_limit_pass(url, tally.base, small, args)
            rss = worker_rss(tally)
    _report(spreads, roofs, rss, args)


if __name__ == "__main__":
    sys.exit(main_guard(run))
