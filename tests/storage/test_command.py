"""`tally prune-events`, run as a user runs it: a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from core.migrate import upgrade
from tests.storage.support import month_start


def tally(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tally.cli", *args],
        env={**os.environ, "TALLY_DATABASE_URL": database_url, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_prune_events_says_what_it_keeps_and_refuses_a_retention_of_no_day(
    empty_database_url: str,
) -> None:
    upgrade(empty_database_url)

    done = tally("prune-events", database_url=empty_database_url)
    assert done.returncode == 0, done.stderr
    since = month_start(0).isoformat(timespec="seconds")
    assert done.stdout.splitlines() == [
        f"1 epoch(s) kept, events recorded since {since} (TALLY_EVENT_RETENTION_DAYS=400)"
    ]

    refused = tally("prune-events", database_url=empty_database_url, TALLY_EVENT_RETENTION_DAYS="0")
    assert refused.returncode == 2
    assert "TALLY_EVENT_RETENTION_DAYS must be at least 1 day" in refused.stderr
