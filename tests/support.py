"""Helpers shared by tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


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
