"""GraphQL errors with an `extensions.code`, and which errors are masked."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from graph.scalars import BigInt


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


@strawberry.interface(description="An expected failure of a mutation: a code and a message.")
class Error:
    code: str
    message: str


@strawberry.type(description="Input that cannot be accepted; `field` names the culprit.")
class InvalidInputError(Error):
    field: str | None = None


@strawberry.type(description="No such thing in the caller's organization.")
class NotFoundError(Error):
    pass


@strawberry.type(description="The limit does not leave room for the amount asked.")
class LimitExceededError(Error):
    resource: str
    used: BigInt
    limit: BigInt | None
    requested: BigInt


@strawberry.type(description="A reservation that expired or was already settled.")
class ReservationStateError(Error):
    reservation_id: strawberry.ID
