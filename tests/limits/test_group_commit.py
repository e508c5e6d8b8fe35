"""Group commit across organizations: many organizations' single events, one statement."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from limits import UsageInput
from limits.batcher import GroupCommitter
from tally.runtime import Runtime
from tests.limits.conftest import open_tiny, used

pytestmark = pytest.mark.anyio


async def test_many_organizations_share_one_commit_and_stay_exact(runtime: Runtime) -> None:
    accounts = [await open_tiny(runtime) for _ in range(8)]
    committer = GroupCommitter(runtime.db, runtime.engine)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engines = [engine.sync_engine for engine in runtime.db.engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        calls = []
        for round_ in range(15):
            for index, account in enumerate(accounts):
                prepared = runtime.engine.prepare(
                    account.organization, [UsageInput("tokens", 10, f"g{round_}-{index}")]
                )[0]
                calls.append(committer.apply(account.organization, prepared))
        decisions = await asyncio.gather(*calls)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
    # tiny plan: 100 tokens, so exactly 10 of each organization's 15 events are accepted
    assert sorted(d.status for d in decisions).count("accepted") == 80
    for account in accounts:
        assert await used(runtime, account, "tokens") == 100
    writes = [s for s in statements if "tally_apply_usage" in s or "INSERT INTO usage" in s]
    if runtime.db.dialect == "postgresql":
        # 120 events of 8 organizations: a few statements, each for several organizations
        assert 1 <= len(writes) < 10, len(writes)
        assert any(s.count("tally_apply_usage") > 1 for s in writes)
