"""The values the limit engine takes and gives: inputs, decisions, meters, reservations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from core.errors import Conflict, DomainError, ErrorCode, InvalidInput
from limits.display import format_meter
from limits.periods import Period
from limits.resource import Limit, Policy, Resource

Status = Literal["accepted", "duplicate", "rejected"]


FIELD_OF_CODE = {
    ErrorCode.UNKNOWN_RESOURCE: "resource",
    ErrorCode.INVALID_AMOUNT: "amount",
    ErrorCode.MISSING_IDEMPOTENCY_KEY: "idempotency_key",
    ErrorCode.INVALID_ATTRIBUTE: "attributes",
    ErrorCode.INVALID_TTL: "ttl_seconds",
    ErrorCode.INVALID_TIMESTAMP: "occurred_at",
}
"""The input a usage refusal is about, when its code says."""


class UsageRejected(InvalidInput):
    """Bad usage input, refused before anything is written.

    `index` is the event's position in its batch, when it came in one; `code` is an
    `ErrorCode` (a plugin may pass its value as a string).
    """

    def __init__(self, code: ErrorCode | str, message: str, index: int | None = None) -> None:
        known = ErrorCode(code)
        super().__init__(known, message, field=FIELD_OF_CODE.get(known))
        self.index = index

    def at(self, index: int) -> UsageRejected:
        return UsageRejected(self.code, f"events[{index}]: {self.message}", index)


class ReservationError(Conflict):
    """A reservation that expired or was already settled."""

    def __init__(self, code: ErrorCode, message: str, reservation_id: str) -> None:
        super().__init__(code, message)
        self.reservation_id = reservation_id


class LimitExceeded(Conflict):
    """The limit does not leave room for the amount asked."""

    def __init__(
        self, message: str, *, resource: str, used: int, limit: int | None, requested: int
    ) -> None:
        super().__init__(ErrorCode.LIMIT_EXCEEDED, message)
        self.resource = resource
        self.used = used
        self.limit = limit
        self.requested = requested


@dataclass(frozen=True)
class UsageInput:
    """Usage as a caller reports it; `occurred_at` defaults to now."""

    resource: str
    amount: int
    idempotency_key: str
    occurred_at: datetime | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedEvent:
    """A validated input with its counter period, hour and cost decided."""

    resource: Resource
    amount: int
    idempotency_key: str
    occurred_at: datetime
    period_start: datetime
    attributes: Mapping[str, Any]
    model: str | None
    action: str | None
    cost_micros: int | None
    reservation_id: str | None = None
    reserved_amount: int = 0

    @property
    def counter(self) -> tuple[str, datetime]:
        return self.resource.key, self.period_start

    @property
    def hour(self) -> datetime:
        return self.occurred_at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class UsageEvent:
    """One unit of usage as recorded, handed to `tally_usage_recorded` observers."""

    organization_id: str
    resource: str
    amount: int
    idempotency_key: str
    occurred_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)
    cost_micros: int | None = None


@dataclass(frozen=True)
class Decision:
    """The answer to "may I?": the status, and the counter as the decision left it."""

    resource: str
    status: Status
    requested: int
    used: int
    limit: int | None
    policy: Policy
    idempotency_key: str = ""
    reserved: int = 0

    @property
    def allowed(self) -> bool:
        return self.status != "rejected"

    @property
    def remaining(self) -> int | None:
        """Room left: the limit less what is used and what reservations hold."""
        return None if self.limit is None else max(self.limit - self.used - self.reserved, 0)

    @property
    def explanation(self) -> str:
        """Why a rejected decision was refused, in words."""
        if self.requested < 0:
            return f"{self.resource}: cannot give back {-self.requested}, only {self.used} in use"
        held = f", {self.reserved} reserved" if self.reserved else ""
        return (
            f"{self.resource}: {self.requested} more would pass the limit of {self.limit} "
            f"({self.used} used{held})"
        )

    @property
    def error_code(self) -> ErrorCode:
        return ErrorCode.NOTHING_TO_RELEASE if self.requested < 0 else ErrorCode.LIMIT_EXCEEDED

    def refusal(self) -> DomainError | None:
        """Why a rejected decision was refused, as the error a single operation raises."""
        if self.status != "rejected":
            return None
        if self.requested < 0:
            return InvalidInput(self.error_code, self.explanation, field="amount")
        return LimitExceeded(
            self.explanation,
            resource=self.resource,
            used=self.used,
            limit=self.limit,
            requested=self.requested,
        )

    @property
    def over_limit(self) -> bool:
        return self.limit is not None and self.used > self.limit


@dataclass(frozen=True)
class Reservation:
    """An amount held against a limit until `expires_at`."""

    id: str
    resource: str
    amount: int
    status: str
    expires_at: datetime
    idempotency_key: str


@dataclass(frozen=True)
class ReserveOutcome:
    """A reservation, or the refusal that kept it from being made."""

    reservation: Reservation | None
    decision: Decision


@dataclass(frozen=True)
class ResourceUsage:
    """One meter: a resource's usage against its limit; `reserved` is held, not yet used."""

    resource: Resource
    used: int
    limit: Limit
    reserved: int = 0

    @property
    def remaining(self) -> int | None:
        if self.limit.value is None:
            return None
        return max(self.limit.value - self.used - self.reserved, 0)

    @property
    def percent(self) -> float:
        if self.limit.value is None:
            return 0.0
        if self.limit.value == 0:
            return 100.0 if self.used > 0 else 0.0
        return round(self.used * 100 / self.limit.value, 2)

    @property
    def display(self) -> str:
        return format_meter(self.used, self.limit.value, self.resource.display)


@dataclass(frozen=True)
class UsageSnapshot:
    """Every meter of an organization in a billing period."""

    period: Period
    resources: tuple[ResourceUsage, ...]

    @property
    def percent_used(self) -> float:
        """The highest percent among limited resources: a full meter is never hidden."""
        limited = [meter.percent for meter in self.resources if meter.limit.value is not None]
        return max(limited, default=0.0)

    @property
    def resets_on(self) -> date:
        return self.period.resets_on

    def get(self, key: str) -> ResourceUsage:
        for meter in self.resources:
            if meter.resource.key == key:
                return meter
        raise KeyError(key)
