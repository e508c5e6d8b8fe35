"""The values the limit engine takes and gives: inputs, decisions, meters, reservations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from core.errors import Conflict, DomainError, ErrorCode, InvalidInput
from limits.display import format_meter
from limits.models import ROLLUP_GRAINS, rollup_bucket
from limits.periods import Period
from limits.resource import Limit, Policy, Resource

Status = Literal["accepted", "duplicate", "rejected", "reused"]
"""`reused`: the idempotency key was recorded with another resource or amount; nothing counted."""

BIGINT_MAX = 2**63 - 1
"""The largest count a counter (a 64-bit BIGINT) holds: `used + reserved` never passes it."""


FIELD_OF_CODE = {
    ErrorCode.UNKNOWN_RESOURCE: "resource",
    ErrorCode.INVALID_AMOUNT: "amount",
    ErrorCode.AMOUNT_TOO_LARGE: "amount",
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


class IdempotencyKeyReused(Conflict):
    """An idempotency key already recorded with another resource or amount
    (IDEMPOTENCY_KEY_REUSED); nothing was recorded. `resource` and `amount` are its first use's,
    `index` the event's position in its batch, when it came in one."""

    def __init__(
        self, key: str, resource: str, amount: int, *, what: str = "", index: int | None = None
    ) -> None:
        where = f"events[{index}]: " if index is not None else ""
        super().__init__(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"{where}idempotency key {key!r} was already used for {what}{amount} {resource}; "
            "a replay must repeat its resource and amount",
            field="idempotency_key",
        )
        self.key = key
        self.resource = resource
        self.amount = amount
        self.what = what
        self.index = index

    def at(self, index: int) -> IdempotencyKeyReused:
        return IdempotencyKeyReused(
            self.key, self.resource, self.amount, what=self.what, index=index
        )


class ReservationError(Conflict):
    """A reservation that expired or was already settled."""

    def __init__(self, code: ErrorCode, message: str, reservation_id: str) -> None:
        super().__init__(code, message)
        self.reservation_id = reservation_id


class LimitExceeded(Conflict):
    """The limit does not leave room for the amount asked (`code` LIMIT_EXCEEDED), or the
    overage would pass the organization's spend cap (SPEND_CAP_REACHED)."""

    def __init__(
        self,
        message: str,
        *,
        resource: str,
        used: int,
        limit: int | None,
        requested: int,
        code: ErrorCode = ErrorCode.LIMIT_EXCEEDED,
    ) -> None:
        super().__init__(code, message)
        self.resource = resource
        self.used = used
        self.limit = limit
        self.requested = requested


class UsageSuspended(Conflict):
    """Metered usage is refused: the organization's subscription is inactive (unpaid past its
    grace, or canceled) since `suspended_from`. Raised before anything is written."""

    def __init__(self, resource: str, suspended_from: datetime) -> None:
        super().__init__(
            ErrorCode.SUBSCRIPTION_INACTIVE,
            f"{resource}: usage is suspended since {suspended_from.isoformat()} because the "
            "subscription is inactive; pay the open invoice to restore it",
        )
        self.resource = resource
        self.suspended_from = suspended_from


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
    """A validated input with its counter period and cost decided."""

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
    def quarter(self) -> datetime:
        """The UTC start of the quarter hour holding `occurred_at`: its rollup bucket."""
        return rollup_bucket(self.occurred_at, ROLLUP_GRAINS[0])


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
    """The answer to "may I?": the status, and the counter as the decision left it.

    `limit` is the plan's; `extra` is the extra allowance (top-ups) this decision knew of:
    what the period drew from it, plus what remains of it when the decision had to read it.
    `reserved` leaves out holds expired by the time of the decision. A `reused` decision
    carries its key's first use (resource, `requested`, `used`, `limit`), like a replay.
    """

    resource: str
    status: Status
    requested: int
    used: int
    limit: int | None
    policy: Policy
    idempotency_key: str = ""
    reserved: int = 0
    extra: int = 0

    @property
    def allowed(self) -> bool:
        return self.status in ("accepted", "duplicate")

    @property
    def remaining(self) -> int | None:
        """Room left: the limit (and extra allowance) less what is used and what reservations
        hold."""
        if self.limit is None:
            return None
        return max(self.limit + self.extra - self.used - self.reserved, 0)

    @property
    def out_of_range(self) -> bool:
        """Whether adding `requested` would take the counter past `BIGINT_MAX`."""
        return self.requested > 0 and self.used + self.reserved + self.requested > BIGINT_MAX

    @property
    def explanation(self) -> str:
        """Why a rejected decision was refused, in words."""
        if self.status == "reused":
            return self.key_reuse().message
        if self.out_of_range:
            return (
                f"{self.resource}: {self.requested} more would take the counter past "
                f"{BIGINT_MAX}, the largest count Tally keeps ({self.used} used"
                + (f", {self.reserved} reserved)" if self.reserved else ")")
            )
        if self.requested < 0:
            return f"{self.resource}: cannot give back {-self.requested}, only {self.used} in use"
        held = f", {self.reserved} reserved" if self.reserved else ""
        if self.policy is Policy.OVERAGE:
            return (
                f"{self.resource}: {self.requested} more would pass the organization's spend "
                f"cap ({self.used} used{held}, plan limit {self.limit})"
            )
        topped = f" and {self.extra} extra" if self.extra else ""
        return (
            f"{self.resource}: {self.requested} more would pass the limit of {self.limit}{topped} "
            f"({self.used} used{held})"
        )

    @property
    def error_code(self) -> ErrorCode:
        if self.status == "reused":
            return ErrorCode.IDEMPOTENCY_KEY_REUSED
        if self.out_of_range:
            return ErrorCode.AMOUNT_TOO_LARGE
        if self.requested < 0:
            return ErrorCode.NOTHING_TO_RELEASE
        if self.policy is Policy.OVERAGE:
            return ErrorCode.SPEND_CAP_REACHED
        return ErrorCode.LIMIT_EXCEEDED

    def refusal(self) -> DomainError | None:
        """Why a rejected (or reused) decision was refused, as the error a single operation
        raises."""
        if self.status == "reused":
            return self.key_reuse()
        if self.status != "rejected":
            return None
        if self.requested < 0 or self.out_of_range:
            return InvalidInput(self.error_code, self.explanation, field="amount")
        return LimitExceeded(
            self.explanation,
            resource=self.resource,
            used=self.used,
            limit=self.limit,
            requested=self.requested,
            code=self.error_code,
        )

    def key_reuse(self) -> IdempotencyKeyReused:
        """The refusal of a `reused` decision."""
        return IdempotencyKeyReused(self.idempotency_key, self.resource, self.requested)

    @property
    def over_limit(self) -> bool:
        return self.limit is not None and self.used > self.limit + self.extra


def refuse_reused(decisions: Sequence[Decision]) -> None:
    """Raise `IdempotencyKeyReused` for the first `reused` decision, naming its event when
    there are several: a request reusing a key is refused whole."""
    for index, decision in enumerate(decisions):
        if decision.status == "reused":
            reused = decision.key_reuse()
            raise reused.at(index) if len(decisions) > 1 else reused


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
    """One meter: a resource's usage against its limit; `reserved` is held, not yet used.

    `drawn` is what this period drew from the organization's extra allowance (top-ups) and
    `extra_left` what remains of it: the meter's room is the plan's limit plus both.

    `used` is Tally's counter, what decisions, alerts and bills count; `displayed` is the
    count a `tally_display_usage` plugin shows instead (None: none), and `shown` what the
    meter shows: `remaining`, `percent` and `display` are of `shown`.
    """

    resource: Resource
    used: int
    limit: Limit
    reserved: int = 0
    drawn: int = 0
    extra_left: int = 0
    displayed: int | None = None

    @property
    def shown(self) -> int:
        """The count the meter shows: the plugin's `displayed`, else Tally's `used`."""
        return self.used if self.displayed is None else self.displayed

    @property
    def extra(self) -> int:
        """The extra allowance counted in this period's room: drawn plus what remains."""
        return self.drawn + self.extra_left

    @property
    def total_limit(self) -> int | None:
        """The plan's limit plus the extra allowance, or None for unlimited."""
        return None if self.limit.value is None else self.limit.value + self.extra

    @property
    def remaining(self) -> int | None:
        if self.total_limit is None:
            return None
        return max(self.total_limit - self.shown - self.reserved, 0)

    @property
    def percent(self) -> float:
        if self.total_limit is None:
            return 0.0
        if self.total_limit == 0:
            return 100.0 if self.shown > 0 else 0.0
        return round(self.shown * 100 / self.total_limit, 2)

    @property
    def overage(self) -> int:
        """Units past the plan's limit that the extra allowance did not cover (what overage
        billing charges)."""
        if self.limit.value is None:
            return 0
        return max(self.used - self.limit.value - self.drawn, 0)

    @property
    def display(self) -> str:
        return format_meter(self.shown, self.total_limit, self.resource.display)


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
