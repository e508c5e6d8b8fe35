"""AI tokens: metered, reset at each billing period."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from limits import ErrorCode, Resource, UsageRejected, hookimpl

TOKENS = Resource(
    key="tokens",
    label="AI Tokens",
    unit="tokens",
    kind="metered",
    attributes=("model", "action", "agent_id", "input_tokens", "output_tokens"),
    description="AI processing tokens consumed this billing period",
    order=10,
)

_TEXT_ATTRIBUTES = ("model", "action", "agent_id")


@hookimpl
def tally_register_resources() -> Iterable[Resource]:
    return [TOKENS]


@hookimpl
def tally_validate_usage(resource: Resource, amount: int, attributes: Mapping[str, Any]) -> None:
    if resource.key != TOKENS.key:
        return
    for name in _TEXT_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 200):
            raise UsageRejected(
                ErrorCode.INVALID_ATTRIBUTE, f"{name} must be a string of 1 to 200 characters"
            )
    split = [attributes.get("input_tokens"), attributes.get("output_tokens")]
    if all(part is None for part in split):
        return
    if any(isinstance(part, bool) or not isinstance(part, int) or part < 0 for part in split):
        raise UsageRejected(
            ErrorCode.INVALID_ATTRIBUTE,
            "input_tokens and output_tokens must both be non-negative integers",
        )
    if sum(int(part) for part in split if part is not None) != amount:
        raise UsageRejected(
            ErrorCode.INVALID_ATTRIBUTE,
            f"input_tokens + output_tokens ({split[0]} + {split[1]}) must equal amount ({amount})",
        )
