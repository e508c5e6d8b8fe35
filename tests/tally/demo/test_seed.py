"""The demo organization: its invoices come from real period closes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing import repository
from billing.accounts import SERVICE_KEY_NAME
from core.auth import authenticate
from core.clock import FrozenClock
from core.config import Settings
from core.migrate import upgrade
from core.orgs import repository as orgs_repository
from tally.demo.seed import demo_keys_file, ensure_demo, read_keys_file
from tally.runtime import build_runtime


@pytest.mark.anyio
async def test_the_demo_shows_invoices_from_real_period_closes(
    empty_database_url: str, tmp_path: Path
) -> None:
    upgrade(empty_database_url)
    runtime = build_runtime(
        Settings(database_url=empty_database_url), FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
    )
    try:
        demo = await ensure_demo(runtime, tmp_path / "keys.json")
        assert demo is not None
        async with runtime.db.read() as session:
            invoices = await repository.list_invoices(session, demo.organization_id, 10)
    finally:
        await runtime.db.dispose()
    assert [(i.period_start, i.number[-4:]) for i in invoices] == [
        (datetime(2026, 2, 1).date(), "0003"),
        (datetime(2026, 1, 1).date(), "0002"),
        (datetime(2025, 12, 1).date(), "0001"),
    ]
    assert invoices[0].total_minor == 226_800
    assert invoices[0].document is not None
    assert invoices[0].document["buyer"]["name"] == "Acme Shop SAS"


@pytest.mark.anyio
async def test_the_demo_keys_are_reused_until_revoked(
    empty_database_url: str, tmp_path: Path
) -> None:
    upgrade(empty_database_url)
    runtime = build_runtime(
        Settings(database_url=empty_database_url), FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
    )
    keys_file = tmp_path / "keys.json"
    try:
        seeded = await ensure_demo(runtime, keys_file)
        assert seeded is not None and seeded.created
        assert keys_file.stat().st_mode & 0o777 == 0o600
        kept = await ensure_demo(runtime, keys_file)
        assert kept is not None and kept.reused and not kept.created
        assert (kept.owner_api_key, kept.service_api_key) == (
            seeded.owner_api_key,
            seeded.service_api_key,
        )
        async with runtime.db.write() as session:
            await orgs_repository.revoke_api_keys(
                session, seeded.organization_id, [SERVICE_KEY_NAME], runtime.clock.now()
            )
        renewed = await ensure_demo(runtime, keys_file)
        assert renewed is not None and not renewed.reused and not renewed.created
        assert renewed.owner_api_key != seeded.owner_api_key
        assert read_keys_file(keys_file) == replace(renewed, reused=True)
        async with runtime.db.read() as session:
            assert await authenticate(session, seeded.owner_api_key) is None
            assert await authenticate(session, renewed.owner_api_key) is not None
    finally:
        await runtime.db.dispose()


def test_the_keys_file_sits_beside_a_sqlite_database_or_where_configured() -> None:
    assert demo_keys_file("sqlite:///./tally.db") == Path("./tally.db.demo-keys.json")
    assert demo_keys_file("sqlite:////srv/t.db") == Path("/srv/t.db.demo-keys.json")
    assert demo_keys_file("postgresql://db/tally") == Path("tally-demo-keys.json")
    assert demo_keys_file("postgresql://db/tally", "/etc/k.json") == Path("/etc/k.json")
