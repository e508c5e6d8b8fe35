"""GraphQL's side of failures, in one place: the `Error` types of mutation unions, the
translation of every `DomainError` into them (or, in a query, into a GraphQL error with
`extensions.code`), and which errors are masked.

Field names are converted to camelCase here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.types.union import StrawberryUnion

from billing.plan_change import Blocker, PlanChangeBlocked
from billing.provider import PortalUnavailable
from core.errors import DomainError, ErrorCode, InvalidInput, NotFound, ProviderFailure
from graph.scalars import BigInt
from limits import LimitExceeded, ReservationError
from limits.types import IdempotencyKeyReused, UsageSuspended

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "tally.request_id"
"""Where the HTTP edge keeps a request's id in its ASGI scope (echoed as `X-Request-Id`)."""


class ApiError(GraphQLError):
    """An expected error shown to the caller as is, with `extensions.code`."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        extensions = {"code": code} if field is None else {"code": code, "field": field}
        super().__init__(message, extensions=extensions)


def unauthenticated() -> ApiError:
    return ApiError("UNAUTHENTICATED", "a valid API key is required: Authorization: Bearer <key>")


def forbidden(message: str) -> ApiError:
    return ApiError("FORBIDDEN", message)


def rate_limited(message: str, retry_after: int) -> GraphQLError:
    """A request refused by a rate limit: `RATE_LIMITED`, with the seconds to wait."""
    return GraphQLError(message, extensions={"code": "RATE_LIMITED", "retryAfter": retry_after})


def camel_case(name: str) -> str:
    """'address_line1' -> 'addressLine1'."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def should_mask_error(error: GraphQLError) -> bool:
    """Mask what came from an unexpected exception; keep validation and ApiErrors."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError | DomainError)


def request_id_of(execution_context: ExecutionContext | None) -> str:
    """The id the HTTP edge gave the request being executed ('-' outside a request)."""
    request = getattr(getattr(execution_context, "context", None), "request", None)
    scope = getattr(request, "scope", None)
    return str(scope.get(REQUEST_ID_KEY, "-")) if isinstance(scope, dict) else "-"


def log_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    """An expected error (a client's: bad input, no key, refused) is one INFO line; an
    unexpected one, masked for the caller, is logged with its traceback and the request id."""
    request_id = request_id_of(execution_context)
    for error in errors:
        if should_mask_error(error):
            log.error(
                "request %s: unexpected error in GraphQL at %s: %s",
                request_id,
                ".".join(str(part) for part in error.path or ()) or "-",
                error.original_error,
                exc_info=error.original_error,
            )
        else:
            code = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED")
            log.info("request %s: %s %s", request_id, code, error.message)


@strawberry.interface(description="An expected failure of a mutation: a code and a message.")
class Error:
    code: ErrorCode
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


@strawberry.type(
    description="The idempotency key was already used with another resource or amount: "
    "nothing was recorded. `resource` and `amount` are its first use's; a replay repeats them."
)
class IdempotencyKeyReusedError(Error):
    idempotency_key: str
    resource: str
    amount: BigInt


@strawberry.type(
    description="Metered usage is suspended since `suspendedFrom`: the subscription is "
    "inactive (unpaid past its grace, or canceled); paying restores it."
)
class SubscriptionInactiveError(Error):
    resource: str
    suspended_from: datetime


@strawberry.type(description="A reservation that expired or was already settled.")
class ReservationStateError(Error):
    reservation_id: strawberry.ID


@strawberry.type(
    description="The billing provider refused or could not be reached; nothing changed."
)
class ProviderFailedError(Error):
    pass


@strawberry.type(description="The billing provider in use has no customer portal (local billing).")
class BillingPortalUnavailableError(Error):
    pass


@strawberry.type(description="A count above the new plan's limit that blocks the change.")
class PlanChangeBlocker:
    resource: str
    used: BigInt
    new_limit: BigInt
    message: str

    @classmethod
    def of(cls, blocker: Blocker) -> PlanChangeBlocker:
        return cls(
            resource=blocker.resource,
            used=BigInt(blocker.used),
            new_limit=BigInt(blocker.new_limit),
            message=blocker.message,
        )


@strawberry.type(description="Resources in use above the new plan's limits; nothing changed.")
class PlanChangeBlockedError(Error):
    blockers: list[PlanChangeBlocker]


def error_of(error: DomainError) -> Error:
    """The union member that answers `error`, by its kind (the most specific first)."""
    code, message = error.code, error.message
    if isinstance(error, LimitExceeded):
        return LimitExceededError(
            code=code,
            message=message,
            resource=error.resource,
            used=BigInt(error.used),
            limit=BigInt(error.limit) if error.limit is not None else None,
            requested=BigInt(error.requested),
        )
    if isinstance(error, IdempotencyKeyReused):
        return IdempotencyKeyReusedError(
            code=code,
            message=message,
            idempotency_key=error.key,
            resource=error.resource,
            amount=BigInt(error.amount),
        )
    if isinstance(error, UsageSuspended):
        return SubscriptionInactiveError(
            code=code,
            message=message,
            resource=error.resource,
            suspended_from=error.suspended_from,
        )
    if isinstance(error, ReservationError):
        reservation = strawberry.ID(error.reservation_id)
        return ReservationStateError(code=code, message=message, reservation_id=reservation)
    if isinstance(error, PlanChangeBlocked):
        blockers = [PlanChangeBlocker.of(blocker) for blocker in error.blockers]
        return PlanChangeBlockedError(code=code, message=message, blockers=blockers)
    if isinstance(error, PortalUnavailable):
        return BillingPortalUnavailableError(code=code, message=message)
    if isinstance(error, ProviderFailure):
        return ProviderFailedError(code=code, message=message)
    if isinstance(error, NotFound):
        return NotFoundError(code=code, message=message)
    field = camel_case(error.field) if error.field else None
    return InvalidInputError(code=code, message=message, field=field)


def query_error_of(error: DomainError) -> ApiError:
    """A failure of a query field: a GraphQL error with `extensions.code`."""
    if isinstance(error, InvalidInput):
        return ApiError("BAD_USER_INPUT", error.message, camel_case(error.field or "") or None)
    return ApiError(str(error.code), error.message)


def union_members(field: StrawberryField) -> tuple[Any, ...]:
    """The object types of a field's union result (empty when it returns no union)."""
    result = field.type
    return tuple(result.types) if isinstance(result, StrawberryUnion) else ()


class DomainErrors(FieldExtension):
    """Answers a mutation's `DomainError` with the member of its result union that fits;
    an error its union does not list is a GraphQL error instead (never masked)."""

    def apply(self, field: StrawberryField) -> None:
        self.members = union_members(field)
        if not any(
            issubclass(member, Error) for member in self.members if isinstance(member, type)
        ):
            raise TypeError(f"mutation {field.python_name} needs a result union with Error members")

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Any, **kwargs: Any
    ) -> Any:
        try:
            return await next_(source, info, **kwargs)
        except DomainError as error:
            answer = error_of(error)
            if type(answer) not in self.members:
                raise query_error_of(error) from error
            return answer


class DomainErrorsInQueries(SchemaExtension):
    """A `DomainError` raised by a query field becomes a GraphQL error with its code."""

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [
            _translated(error) if isinstance(error.original_error, DomainError) else error
            for error in result.errors
        ]


def _translated(error: GraphQLError) -> GraphQLError:
    assert isinstance(error.original_error, DomainError)
    answer = query_error_of(error.original_error)
    return GraphQLError(
        answer.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=answer.extensions,
    )


class TallySchema(strawberry.Schema):
    """The schema, logging its errors by `log_errors` (one line for a client's error)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)
