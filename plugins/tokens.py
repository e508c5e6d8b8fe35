"""AI tokens: metered, reset at each billing period."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from limits import ErrorCode, PreparedEvent, Resource, UsageRejected, hookimpl

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
MAX_TEXT_LENGTH = 200


@hookimpl
def tally_register_resources() -> Iterable[Resource]:
    return [TOKENS]


@hookimpl
def tally_validate_batch(resource: Resource, events: Sequence[PreparedEvent]) -> None:
    if resource.key != TOKENS.key:
        return
    for position, event in enumerate(events):
        problem = _attribute_problem(event.amount, event.attributes)
        if problem is not None:
            raise UsageRejected(ErrorCode.INVALID_ATTRIBUTE, problem, position)


def _attribute_problem(amount: int, attributes: Mapping[str, Any]) -> str | None:
    """What is wrong with a token event's attributes, or None: `model`, `action` and
    `agent_id` are strings of 1 to 200 characters; `input_tokens` and `output_tokens`, when
    given, are both non-negative integers adding up to `amount`."""
    for name in _TEXT_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > MAX_TEXT_LENGTH
        ):
            return f"{name} must be a string of 1 to {MAX_TEXT_LENGTH} characters"
    input_tokens, output_tokens = attributes.get("input_tokens"), attributes.get("output_tokens")
    if input_tokens is None and output_tokens is None:
        return None
    if not (_is_count(input_tokens) and _is_count(output_tokens)):
        return "input_tokens and output_tokens must both be non-negative integers"
    if input_tokens + output_tokens != amount:
        return (
            f"input_tokens + output_tokens ({input_tokens} + {output_tokens}) must equal "
            f"amount ({amount})"
        )
    return None


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
