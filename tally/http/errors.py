"""One error type and one JSON error response for every HTTP route.

`HttpError` is a failure of the transport (no key, a body too large, the database away); a
`DomainError` is translated here, by its kind, and nowhere else. Both answer
`{"error": {"code", "message"}}` with a fitting status.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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


async def http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return error_response(error.status, error.code, error.message, error.headers)


async def domain_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    return error_response(status_of(error), error.code, error.message)


async def database_away(_: Request, error: Exception) -> Response:
    log.error("database unavailable: %s", error)
    return error_response(
        503,
        "DATABASE_UNAVAILABLE",
        "the database cannot be reached; retry shortly",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


EXCEPTION_HANDLERS = {
    HttpError: http_error,
    DomainError: domain_error,
    DBAPIError: database_away,
    OSError: database_away,
}
"""The app's exception handlers: every route's failures answered in one way."""
