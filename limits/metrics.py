"""The limit engine's Prometheus figures: usage decisions by status and resource, and the
sizes of group-commit groups. Exposed with the others at `/metrics` (`tally.http.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from limits.types import Decision

USAGE_DECISIONS = Counter(
    "tally_usage_decisions",
    "Usage decisions made (recorded, consumed, committed), by status and resource.",
    ["status", "resource"],
)
GROUP_SIZE = Histogram(
    "tally_group_commit_size",
    "Events written together in one group-commit transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


def count_decisions(decisions: Iterable[Decision]) -> None:
    """Counts each decision under its status and resource."""
    for decision in decisions:
        USAGE_DECISIONS.labels(decision.status, decision.resource).inc()
