"""The page query runs a constant number of SQL statements: no N+1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from billing import repository as billing_repository
from billing.accounts import OpenedAccount, add_member
from billing.models import Invoice
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.graph.test_page import PAGE
from tests.support import graphql

pytestmark = pytest.mark.anyio


@contextmanager
def counting(runtime: Runtime) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engines = [engine.sync_engine for engine in runtime.db.engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def grow(runtime: Runtime, account: OpenedAccount, members: int, invoices: int) -> None:
    async with runtime.db.write() as session:
        for i in range(members - 1):
            await add_member(
                session, runtime.engine, account.organization, email=f"m{i}@example.com"
            )
        await billing_repository.add(
            session,
            *(
                Invoice(
                    organization_id=account.organization.id,
                    number=f"N-{account.organization.id[:8]}-{i}",
                    issued_on=date(2026, 1, 1 + i),
                    total_minor=100,
                    currency="EUR",
                    status="paid",
                    created_at=runtime.clock.now(),
                )
                for i in range(invoices)
            ),
        )


async def page_statements(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount
) -> list[str]:
    with counting(runtime) as statements:
        body = await graphql(client, account.owner_api_key, PAGE)
    assert "errors" not in body, body
    return statements


async def test_the_page_query_costs_the_same_with_1_or_20_members(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    small = await open_org(plan="scale")
    large = await open_org(plan="scale")
    await grow(runtime, small, members=1, invoices=1)
    await grow(runtime, large, members=20, invoices=5)
    await page_statements(runtime, client, small)
    await page_statements(runtime, client, large)
    few = await page_statements(runtime, client, small)
    many = await page_statements(runtime, client, large)
    body = await graphql(client, large.owner_api_key, "{ organization { members { id } } }")
    assert len(body["data"]["organization"]["members"]) == 20
    assert len(few) == len(many), (few, many)
    selects = [s for s in many if s.lstrip().upper().startswith("SELECT")]
    print(f"page query: {len(many)} SQL statements ({len(selects)} SELECT)")
    assert len(selects) <= 4, "the key is cached; members, usage, subscription, invoices"
