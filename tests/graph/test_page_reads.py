"""The page query reads what it shows and nothing more: the key with its organization in one
statement (none while the key is cached), each other table once, the DataLoaders through one
connection, and nothing written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.graph.test_page import PAGE
from tests.graph.test_statement_count import counting, grow
from tests.support import graphql

pytestmark = pytest.mark.anyio

SHOWN = ["invoices", "members", "subscriptions", "usage_counters"]
"""The tables the page reads besides the key's (one statement each)."""
LOADED_ONLY = "{ organization { usage { percentUsed } members { email } subscription { status } } }"


def tables_read(statements: list[str]) -> list[str]:
    """The first table each SELECT names (its FROM), in order."""
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    return [found.group(1) for s in reads if (found := re.search(r"\bFROM (\w+)", s))]


def writes(statements: list[str]) -> list[str]:
    verbs = ("INSERT", "UPDATE", "DELETE")
    return [s for s in statements if s.lstrip().upper().startswith(verbs)]


@contextmanager
def checkouts(runtime: Runtime) -> Iterator[list[object]]:
    """The connections taken from the read pool meanwhile."""
    taken: list[object] = []

    def record(*args: Any) -> None:
        taken.append(args[0])

    pool = runtime.db.engine.sync_engine
    event.listen(pool, "checkout", record)
    try:
        yield taken
    finally:
        event.remove(pool, "checkout", record)


async def test_the_page_reads_each_table_once_and_the_key_with_its_organization(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(plan="scale")
    await grow(runtime, account, members=5, invoices=3)
    with counting(runtime) as first:
        body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    key_read = [s for s in first if "api_keys" in s and s.lstrip().upper().startswith("SELECT")]
    assert len(key_read) == 1 and "JOIN organizations" in key_read[0], first
    assert sorted(tables_read(first)) == sorted(["api_keys", *SHOWN]), first
    with counting(runtime) as cached:
        body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    assert sorted(tables_read(cached)) == SHOWN, cached
    assert writes(cached) == [], "a read writes nothing (the key's last use: once a minute)"
    others = [s for s in cached if not s.lstrip().upper().startswith("SELECT")]
    sqlite_begins = ["BEGIN"] * 2 if runtime.db.dialect == "sqlite" else []
    assert others == sqlite_begins, "SQLite: the loaders' BEGIN and the invoices' one"
    print(f"page query ({runtime.db.dialect}): {len(cached)} statements, key cached")


async def test_the_loaders_share_one_connection(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    await graphql(client, account.owner_api_key, PAGE)
    with checkouts(runtime) as taken:
        body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    assert len(taken) == 2, "one for the loaders (members, usage, subscription), one for invoices"
    with checkouts(runtime) as taken:
        body = await graphql(client, account.owner_api_key, LOADED_ONLY)
    assert "errors" not in body, body
    assert len(taken) == 1
