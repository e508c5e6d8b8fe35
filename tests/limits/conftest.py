"""A runtime with small limits for the engine's tests."""

from __future__ import annotations

from datetime import datetime

import pytest

from billing.accounts import OpenedAccount, open_account
from limits import Decision
from tally.runtime import Runtime

PLANS = """
[plans.tiny]
name = "Tiny"
price_monthly = "1.00"
currency = "EUR"
[plans.tiny.limits]
tokens = 100
documents = 3
agents = 2
seats = 50
[plans.tiny.thresholds]
tokens = [50, 80, 100]

[plans.soft]
name = "Soft"
price_monthly = "2.00"
currency = "EUR"
[plans.soft.limits]
tokens = 100
[plans.soft.policies]
tokens = "soft"
"""


@pytest.fixture
def plans() -> str:
    return PLANS


async def open_tiny(runtime: Runtime, plan: str = "tiny") -> OpenedAccount:
    async with runtime.db.write() as session:
        return await open_account(
            session,
            runtime.engine,
            runtime.catalog,
            name="Tiny",
            plan_id=plan,
            owner_email="owner@example.com",
            anchor_day=1,
        )


async def consume(
    runtime: Runtime,
    account: OpenedAccount,
    resource: str,
    amount: int,
    key: str,
    occurred_at: datetime | None = None,
    **attrs: object,
) -> Decision:
    async with runtime.db.write() as session:
        return await runtime.engine.consume(
            session,
            account.organization,
            resource,
            amount,
            idempotency_key=key,
            attributes=attrs,
            occurred_at=occurred_at,
        )


async def used(runtime: Runtime, account: OpenedAccount, resource: str) -> int:
    async with runtime.db.read() as session:
        snapshot = await runtime.engine.usage(session, account.organization)
    return snapshot.get(resource).used
