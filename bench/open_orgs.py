"""Opens many organizations in one process, through Tally's own account opening.

It calls what `tally create-org` calls, 8 accounts at a time, so a benchmark's 1,000
organizations take about a minute instead of 1,000 processes. The database is the one
TALLY_DATABASE_URL names (migrated first); plans come from TALLY_PLANS, as for `tally`.

Writes one JSON line per organization to OUTPUT (`{"organization_id", "owner_api_key",
"service_api_key"}`, the create-org fields), and a progress line on stderr every 100.

    TALLY_DATABASE_URL=postgresql://... .venv/bin/python bench/open_orgs.py 1000 \\
        --plan bench-hard --name "Bench spread" --output orgs.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from core.config import Settings
from core.migrate import upgrade
from tally.runtime import Runtime, build_runtime

CONCURRENCY = 8
"""Accounts opened at once (each opening is two short transactions)."""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("count", type=int, help="how many organizations (1 to 100,000)")
    parser.add_argument("--plan", required=True, help="the plan id, e.g. bench-hard")
    parser.add_argument("--name", required=True, help="names are '<NAME> <n>'")
    parser.add_argument("--output", type=Path, required=True, help="the JSON lines file")
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000:
        parser.error("count must be 1 to 100,000")
    return args


async def _open_all(runtime: Runtime, args: argparse.Namespace) -> list[dict[str, str]]:
    opened: dict[int, dict[str, str]] = {}
    numbers = iter(range(args.count))
    started = time.perf_counter()

    async def opener() -> None:
        for number in numbers:
            done = await runtime.accounts.open(
                name=f"{args.name} {number + 1}",
                plan_id=args.plan,
                owner_email=f"owner{number + 1}@bench.invalid",
                anchor_day=1,
            )
            if done.provider_error:
                raise SystemExit(f"organization {number + 1}: {done.provider_error}")
            account = done.account
            opened[number] = {
                "organization_id": account.organization.id,
                "owner_api_key": account.owner_api_key,
                "service_api_key": account.service_api_key,
            }
            if len(opened) % 100 == 0 or len(opened) == args.count:
                seconds = time.perf_counter() - started
                print(f"  opened {len(opened):,}/{args.count:,} ({seconds:.1f}s)", file=sys.stderr)

    try:
        await asyncio.gather(*(opener() for _ in range(min(CONCURRENCY, args.count))))
    finally:
        await runtime.db.dispose()
    return [opened[number] for number in sorted(opened)]


def main() -> None:
    args = _arguments()
    settings = Settings.from_env()
    upgrade(settings.database_url)
    rows = asyncio.run(_open_all(build_runtime(settings), args))
    args.output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
