"""The Organization page query over HTTP: requests/s, and its ratio to a minimal query.

Measures `POST /graphql` with the page query (the text of `PAGE` in tests/graph/test_page.py,
read from that file) and an owner key, under `wrk -t2 -cC -dSs` (bench/post.lua), against
`tally serve --workers 2` on a fresh PostgreSQL database with one organization (create-org).
The comparison, in the same run and on the same server, alternating with the page: the
minimal Strawberry query `{ __typename }` with the same key (authentication and the GraphQL
pipeline, no resolver); target: the page at >= 0.5 of it. Then the RSS of each `tally serve`
worker (target <= 150 MB). Every answer must be 200 without "errors", else it exits 1.

Run (from the repository root; PostgreSQL at TALLY_BENCH_POSTGRES; wrk installed when missing):

    .venv/bin/python bench/page_query.py                   # 3 runs, -t2 -c32 -d10s
    .venv/bin/python bench/page_query.py --connections 64 --seconds 5
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

import httpx
from harness import (
    ROOT,
    check,
    deployment,
    load_average,
    main_guard,
    median,
    say,
    target,
    worker_rss,
)
from wrk import WrkResult, ensure_wrk, run_wrk, wrk_arguments

MINIMAL = "{ __typename }"
TARGET_RATIO = 0.5


def page_query() -> str:
    """`PAGE` as tests/graph/test_page.py defines it."""
    tree = ast.parse((ROOT / "tests" / "graph" / "test_page.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(name, ast.Name) and name.id == "PAGE" for name in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit("PAGE not found in tests/graph/test_page.py")


def _arguments() -> argparse.Namespace:
    parser = wrk_arguments(__doc__, connections=32)
    return parser.parse_args()


def run() -> None:
    args = _arguments()
    ensure_wrk()
    page = json.dumps({"query": " ".join(page_query().split())})
    minimal = json.dumps({"query": MINIMAL})
    pages: list[WrkResult] = []
    minimals: list[WrkResult] = []
    with deployment("page") as bench:
        org = bench.create_org("Bench page", "ecommerce-enterprise")
        key = org["owner_api_key"]
        with bench.tally_process() as tally:
            base = tally.base
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            answer = httpx.post(f"{base}/graphql", content=page, headers=headers).json()
            check(
                "errors" not in answer
                and answer["data"]["organization"]["id"] == org["organization_id"],
                "the page query answers the organization without errors",
            )

            def load(body: str, seconds: int) -> WrkResult:
                result = run_wrk(
                    base,
                    "post.lua",
                    ["/graphql", key, body],
                    threads=args.threads,
                    connections=args.connections,
                    seconds=seconds,
                )
                check(
                    result.lua.get("bad", 1) == 0 and result.errors == 0,
                    f"{result.lua.get('ok', 0):,} answers, none with errors",
                )
                return result

            say("warm-up: 3s of each query")
            load(minimal, 3)
            load(page, 3)
            for index in range(1, args.runs + 1):
                minimals.append(load(minimal, args.seconds))
                pages.append(load(page, args.seconds))
                say(
                    f"run {index}: page {pages[-1].requests_per_s:,.0f} req/s "
                    f"(p50 {pages[-1].p50_ms:.1f} ms, p99 {pages[-1].p99_ms:.1f} ms) | "
                    f"{{ __typename }} {minimals[-1].requests_per_s:,.0f} req/s "
                    f"(p99 {minimals[-1].p99_ms:.1f} ms) | ratio "
                    f"{pages[-1].requests_per_s / minimals[-1].requests_per_s:.3f}"
                )
            rss = worker_rss(tally)
    ratios = [p.requests_per_s / m.requests_per_s for p, m in zip(pages, minimals, strict=True)]
    load_text = f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s"
    print(
        f"\nOrganization page query ({load_text}, tally serve --workers 2, PostgreSQL), "
        f"median of {args.runs} runs:"
    )
    print(
        f"  page query: {median([p.requests_per_s for p in pages]):,.0f} req/s, "
        f"p50 {median([p.p50_ms for p in pages]):.1f} ms, "
        f"p99 {median([p.p99_ms for p in pages]):.1f} ms"
    )
    print(
        f"  {MINIMAL} on the same server: {median([m.requests_per_s for m in minimals]):,.0f}"
        f" req/s, p99 {median([m.p99_ms for m in minimals]):.1f} ms"
    )
    print("  " + target("ratio page / minimal", median(ratios), TARGET_RATIO))
    for line in rss:
        print(f"  {line}")
    print(f"  {load_average()}")


if __name__ == "__main__":
    sys.exit(main_guard(run))
