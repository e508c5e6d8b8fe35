"""Custom scalars: BigInt, for counts that pass 2^31.

One rule for integers in both APIs (GraphQL and `/v1`): an integer is written as a JSON or
GraphQL integer (`1200`), never as a string (`"1200"`), a fraction (`10.5`) or a boolean,
whether it is inline in the query or in the variables. A value that breaks the rule is
refused with the same message either way.

Text is refused at the edge, in both APIs, when it holds a NUL or a character that is not
valid Unicode (a lone surrogate): `text_problem` and `bad_text_in` say which and where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NewType

import strawberry
from graphql import GraphQLError, IntValueNode, ValueNode, print_ast
from strawberry.types.scalar import ScalarDefinition

BigInt = NewType("BigInt", int)

BIGINT_MAX = 2**63 - 1


def integer_problem(value: Any) -> str | None:
    """Why `value` (decoded JSON) is not an acceptable integer, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int):
        shown = json.dumps(value) if isinstance(value, str | float | bool | None) else repr(value)
        return f"needs an integer written as a number (e.g. 1200), not {shown}"
    if abs(value) > BIGINT_MAX:
        return f"must be between -{BIGINT_MAX} and {BIGINT_MAX}"
    return None


def text_problem(value: str) -> str | None:
    """What makes `value` unacceptable text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a character that is not valid Unicode (a lone surrogate)"
    return None


def bad_text_in(value: Any, path: str) -> tuple[str, str] | None:
    """The first string in decoded JSON `value` (keys included) that is not acceptable text,
    as (its path, the problem)."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            inner = f"{path}.{key}" if isinstance(key, str) else path
            found = bad_text_in(key, inner) or bad_text_in(item, inner)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = bad_text_in(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _parse_bigint(value: Any) -> int:
    problem = integer_problem(value)
    if problem is not None:
        raise GraphQLError(f"BigInt {problem}")
    number: int = value
    return number


def _parse_bigint_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError(
            f"BigInt needs an integer written as a number (e.g. 1200), not {print_ast(node)}"
        )
    return _parse_bigint(int(node.value))


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A 64-bit signed integer, written as a JSON or GraphQL integer (`1200`): "
        'never a string (`"1200"`) nor a fraction.',
        serialize=int,
        parse_value=_parse_bigint,
        parse_literal=_parse_bigint_literal,
    ),
}
