"""The one family of expected failures: every refusal the domain makes is a `DomainError`.

A failure has a `code` (an `ErrorCode`), a `message` for people, and optionally the input
`field` at fault, in snake_case (each API spells it its own way at its boundary). Its class
says what kind of failure it is, and so how each API answers it: the HTTP translation lives in
`tally.http.errors`, the GraphQL one in `graph.errors`, and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every code a failure may carry, in both APIs."""

    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    UNKNOWN_RESOURCE = "UNKNOWN_RESOURCE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    INVALID_ATTRIBUTE = "INVALID_ATTRIBUTE"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    INVALID_TTL = "INVALID_TTL"
    MISSING_IDEMPOTENCY_KEY = "MISSING_IDEMPOTENCY_KEY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    NOTHING_TO_RELEASE = "NOTHING_TO_RELEASE"
    RESERVATION_EXPIRED = "RESERVATION_EXPIRED"
    RESERVATION_RELEASED = "RESERVATION_RELEASED"
    ALREADY_COMMITTED = "ALREADY_COMMITTED"
    PLAN_NOT_FOUND = "PLAN_NOT_FOUND"
    SAME_PLAN = "SAME_PLAN"
    NO_SUBSCRIPTION = "NO_SUBSCRIPTION"
    PLAN_CHANGE_BLOCKED = "PLAN_CHANGE_BLOCKED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PORTAL_UNAVAILABLE = "PORTAL_UNAVAILABLE"
    INVALID_LINK = "INVALID_LINK"
    LINK_EXPIRED = "LINK_EXPIRED"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    WEBHOOKS_NOT_CONFIGURED = "WEBHOOKS_NOT_CONFIGURED"
    SUBSCRIPTION_INACTIVE = "SUBSCRIPTION_INACTIVE"
    SPEND_CAP_REACHED = "SPEND_CAP_REACHED"
    TOPUP_NOT_FOUND = "TOPUP_NOT_FOUND"
    NOTHING_SCHEDULED = "NOTHING_SCHEDULED"
    INVOICE_NOT_PAYABLE = "INVOICE_NOT_PAYABLE"
    CURRENCY_NOT_OFFERED = "CURRENCY_NOT_OFFERED"
    OVERLOADED = "OVERLOADED"
    ROLE_TOO_HIGH = "ROLE_TOO_HIGH"
    LAST_OWNER = "LAST_OWNER"
    RATE_LIMITED = "RATE_LIMITED"


class DomainError(Exception):
    """An expected failure: nothing was changed, and the caller can act on the message."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Input that cannot be accepted as given; `field` names the culprit when one does."""


class NotFound(DomainError):
    """No such thing in the caller's organization (answered exactly like one that exists
    elsewhere)."""

    @classmethod
    def of(cls, what: str) -> NotFound:
        return cls(ErrorCode.NOT_FOUND, f"no such {what}")


class Conflict(DomainError):
    """The request contradicts the state it found (a key reused, a settled reservation)."""


class Refused(DomainError):
    """A credential or link that does not open what it names."""


class ProviderFailure(DomainError):
    """The billing provider refused or could not be reached; nothing changed locally."""


class Unavailable(DomainError):
    """A capability this deployment does not have (a portal with local billing, webhooks with
    no secret)."""
