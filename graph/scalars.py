"""Custom scalars: BigInt, for counts that pass 2^31."""

from __future__ import annotations

from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

BigInt = NewType("BigInt", int)

_BIGINT_MAX = 2**63 - 1


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"BigInt needs an integer, not {value!r}")
    number = int(value)
    if abs(number) > _BIGINT_MAX:
        raise ValueError("BigInt is limited to 64-bit signed integers")
    return number


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer that may pass 2^31, serialized as a JSON number.",
        serialize=int,
        parse_value=_parse_bigint,
    ),
}
