"""One error type and one JSON error response for every HTTP route.

`HttpError` is a failure of the transport (no key, a body too large, the database away); a
`DomainError` is translated here, by its kind, and nowhere else. Both answer
`{"error": {"code", "message"}}` with a fitting status.

Only a database that cannot be reached (`core.db.is_connection_failure`) is a 503 with
`Retry-After`; any other failure is a 500 whose log line carries the request's id (the
`X-Request-Id` header of the answer). A client's error is logged as one line.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.db import is_connection_failure
from core.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    InvalidInput,
    NotFound,
    ProviderFailure,
    Refused,
    Unavailable,
)
from graph.errors import REQUEST_ID_KEY

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

STATUS_OF_KIND: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 400),
    (Refused, 403),
    (NotFound, 404),
    (Conflict, 409),
    (ProviderFailure, 502),
    (Unavailable, 503),
)
"""The HTTP status of each kind of domain failure; any other kind is a 400."""

STATUS_OF_CODE: dict[ErrorCode, int] = {ErrorCode.SUBSCRIPTION_INACTIVE: 402}
"""Codes whose status is more specific than their kind's (402: pay to go on)."""


class HttpError(Exception):
    """A failure of the HTTP exchange itself, answered with `status` and `headers`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON body every route answers a failure with."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def status_of(error: DomainError) -> int:
    if error.code in STATUS_OF_CODE:
        return STATUS_OF_CODE[error.code]
    return next((status for kind, status in STATUS_OF_KIND if isinstance(error, kind)), 400)


def request_id(request: Request) -> str:
    """The id `tally.http.limits.RequestIds` gave the request ('-' without it)."""
    return str(request.scope.get(REQUEST_ID_KEY, "-"))


STATUS_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    log.info("request %s: %s %s: %s", request_id(request), error.status, error.code, error.message)
    return error_response(error.status, error.code, error.message, error.headers)


async def starlette_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, a wrong method) in the JSON of every route."""
    assert isinstance(error, HTTPException)
    status = error.status_code
    code = STATUS_CODES.get(status, "HTTP_ERROR")
    message = error.detail
    if status == 405:
        allowed = error.headers.get("Allow", "") if error.headers else ""
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    elif status == 404:
        message = f"no route {request.url.path}"
    log.info("request %s: %s %s", request_id(request), status, message)
    return error_response(status, code, message, dict(error.headers or {}))


async def domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    status = status_of(error)
    log.info("request %s: %s %s: %s", request_id(request), status, error.code, error.message)
    retry_after = getattr(error, "retry_after_seconds", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(status, error.code, error.message, headers)


async def database_error(request: Request, error: Exception) -> Response:
    """503 with `Retry-After` when the database cannot be reached; any other database
    failure is the server's: a 500, logged with its traceback."""
    if is_connection_failure(error):
        log.error("request %s: database unavailable: %s", request_id(request), error)
        return error_response(
            503,
            "DATABASE_UNAVAILABLE",
            "the database cannot be reached; retry shortly",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return internal_error(request, error)


def internal_error(request: Request, error: BaseException) -> JSONResponse:
    """The answer to a failure nobody expected: logged with the request id, a JSON 500."""
    identifier = request_id(request)
    log.error("request %s: unexpected error: %r", identifier, error, exc_info=error)
    return error_response(
        500,
        "INTERNAL_ERROR",
        f"unexpected error; quote request id {identifier} when reporting it",
    )


EXCEPTION_HANDLERS = {
    HttpError: http_error,
    HTTPException: starlette_error,
    DomainError: domain_error,
    DBAPIError: database_error,
    PoolTimeout: database_error,
    OSError: database_error,
}
"""The app's exception handlers: every route's failures answered in one way."""


async def answer_unhandled(request: Request, error: Exception) -> Response:
    """The answer to an exception raised outside the routes' handlers (in a middleware):
    the handler of `EXCEPTION_HANDLERS` that fits it, else a logged JSON 500."""
    for kind, handler in EXCEPTION_HANDLERS.items():
        if isinstance(error, kind):
            return await handler(request, error)
    return internal_error(request, error)
