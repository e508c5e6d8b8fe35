"""Agents: the AI assistants deployed (a gauge)."""

from __future__ import annotations

from collections.abc import Iterable

from limits import Resource, hookimpl

AGENTS = Resource(
    key="agents",
    label="Agents",
    unit="agents",
    kind="gauge",
    attributes=("agent_id",),
    description="Active AI assistants deployed",
    order=30,
)


@hookimpl
def tally_register_resources() -> Iterable[Resource]:
    return [AGENTS]
