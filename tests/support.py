"""Helpers shared by tests."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from billing.accounts import OpenedAccount, create_api_key
from core.orgs import Role
from tally.runtime import Runtime


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """An instant in UTC."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


async def graphql(
    client: httpx.AsyncClient,
    key: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL operation with a Bearer key; returns the JSON body."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def member_key(runtime: Runtime, account: OpenedAccount, role: Role) -> str:
    """The secret of a new member key with `role` in the account's organization."""
    async with runtime.db.write() as session:
        _, secret = await create_api_key(
            session, runtime.engine, account.organization, name=role.value, role=role
        )
    return secret


SMALL_PLANS = """
[plans.small]
name = "Small"
price_monthly = "10.00"
currency = "EUR"
[plans.small.limits]
tokens = 1000
documents = 5
agents = 2
seats = 3
"""
"""Small limits for contract tests: a plan `small`."""


def write_plans(path: Path, text: str) -> Path:
    """A plans TOML file for a test."""
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
