"""Helpers shared by tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import OpenedAccount, create_api_key
from core.orgs import Role
from limits.models import OrganizationRef, UsageEventRow
from tally.runtime import Runtime


async def usage_events(session: AsyncSession, organization_id: str) -> list[UsageEventRow]:
    """An organization's raw usage events, in any epoch (the table names the organization by
    its `OrganizationRef`)."""
    statement = (
        select(UsageEventRow)
        .join(OrganizationRef, OrganizationRef.ref == UsageEventRow.organization_ref)  # type: ignore[arg-type]
        .where(OrganizationRef.organization_id == organization_id)  # type: ignore[arg-type]
    )
    return list((await session.execute(statement)).scalars())


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


@dataclass(frozen=True)
class Served:
    """A running `tally serve`: its base URL, its process and the file holding its output."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def tally_serve(
    env: Mapping[str, str], log: Path, *args: str, workers: int = 1, seconds: float = 90
) -> Iterator[Served]:
    """A real `tally serve --workers N` (and `args`, e.g. "--demo") on a free port, yielded once
    its /healthz answers (the test fails with its output if it never does); terminated when
    the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "tally.cli", "serve", "--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--workers", str(workers), *args],
            env=dict(env), stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + seconds
        while not _healthy(served.base):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("tally serve did not start: " + log.read_text())
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
