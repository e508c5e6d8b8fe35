"""GraphQL errors with an `extensions.code`, and which errors are masked."""

from __future__ import annotations

from graphql import GraphQLError


class ApiError(GraphQLError):
    """An expected error shown to the caller as is, with `extensions.code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, extensions={"code": code})


def unauthenticated() -> ApiError:
    return ApiError("UNAUTHENTICATED", "a valid API key is required: Authorization: Bearer <key>")


def forbidden(message: str) -> ApiError:
    return ApiError("FORBIDDEN", message)


def bad_input(message: str) -> ApiError:
    return ApiError("BAD_USER_INPUT", message)


def should_mask_error(error: GraphQLError) -> bool:
    """Mask what came from an unexpected exception; keep validation and ApiErrors."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)
