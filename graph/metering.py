"""GraphQL of metering: usage mutations, reservations, statistics and alerts."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from graph.errors import (
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    ReservationStateError,
)
from graph.permissions import Info, target_organization, usage_caller
from graph.scalars import BigInt
from limits import Decision, ReservationError, UsageInput, UsageRejected
from limits import Reservation as ReservationValue

NOT_FOUND = "no such organization"


@strawberry.enum
class UsageStatus(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@strawberry.type(description="Usage recorded (or recognised as a replay) and the meter after it.")
class UsageDecision:
    resource: str
    status: UsageStatus
    requested: BigInt
    used: BigInt
    limit: BigInt | None
    remaining: BigInt | None
    idempotency_key: str


@strawberry.type(description="An amount held against a limit until committed or released.")
class Reservation:
    id: strawberry.ID
    resource: str
    amount: BigInt
    status: str
    expires_at: dt.datetime
    idempotency_key: str

    @classmethod
    def of(cls, value: ReservationValue) -> Reservation:
        return cls(
            id=strawberry.ID(value.id),
            resource=value.resource,
            amount=BigInt(value.amount),
            status=value.status,
            expires_at=value.expires_at,
            idempotency_key=value.idempotency_key,
        )


ConsumeUsageResult = Annotated[
    UsageDecision | LimitExceededError | InvalidInputError | NotFoundError | ReservationStateError,
    strawberry.union("ConsumeUsageResult"),
]
ReserveUsageResult = Annotated[
    Reservation | LimitExceededError | InvalidInputError | NotFoundError,
    strawberry.union("ReserveUsageResult"),
]
ReleaseReservationResult = Annotated[
    Reservation | NotFoundError | ReservationStateError,
    strawberry.union("ReleaseReservationResult"),
]


def _answer(decision: Decision) -> UsageDecision | LimitExceededError | InvalidInputError:
    if decision.status == "rejected" and decision.requested < 0:
        return InvalidInputError(
            code=decision.error_code, message=decision.explanation, field="amount"
        )
    if decision.status == "rejected":
        return LimitExceededError(
            code=decision.error_code,
            message=decision.explanation,
            resource=decision.resource,
            used=BigInt(decision.used),
            limit=BigInt(decision.limit) if decision.limit is not None else None,
            requested=BigInt(decision.requested),
        )
    return UsageDecision(
        resource=decision.resource,
        status=UsageStatus(decision.status),
        requested=BigInt(decision.requested),
        used=BigInt(decision.used),
        limit=BigInt(decision.limit) if decision.limit is not None else None,
        remaining=BigInt(decision.remaining) if decision.remaining is not None else None,
        idempotency_key=decision.idempotency_key,
    )


FIELDS = {
    "UNKNOWN_RESOURCE": "resource",
    "INVALID_AMOUNT": "amount",
    "MISSING_IDEMPOTENCY_KEY": "idempotencyKey",
    "INVALID_ATTRIBUTE": "attributes",
    "INVALID_TTL": "ttlSeconds",
}


def _invalid(error: UsageRejected) -> InvalidInputError:
    return InvalidInputError(code=error.code, message=error.message, field=FIELDS.get(error.code))


def _reservation_error(
    error: ReservationError, reservation_id: str
) -> NotFoundError | ReservationStateError:
    if error.code == "NOT_FOUND":
        return NotFoundError(code="NOT_FOUND", message="no such reservation")
    return ReservationStateError(
        code=error.code, message=error.message, reservation_id=strawberry.ID(reservation_id)
    )


def _attributes(value: JSON | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageRejected("INVALID_ATTRIBUTE", "attributes must be a JSON object")
    return dict(value)


@strawberry.type
class UsageMutation:
    @strawberry.mutation(description="Record usage: all or nothing, once per idempotency key.")
    async def consume_usage(
        self,
        info: Info,
        *,
        organization_id: strawberry.ID | None = None,
        resource: str,
        amount: BigInt,
        idempotency_key: str,
        attributes: JSON | None = None,
    ) -> ConsumeUsageResult:
        organization = await target_organization(info, usage_caller(info), organization_id)
        if organization is None:
            return NotFoundError(code="NOT_FOUND", message=NOT_FOUND)
        runtime = info.context.runtime
        try:
            usage = UsageInput(
                resource, int(amount), idempotency_key, None, _attributes(attributes)
            )
            async with runtime.db.write() as session:
                decisions = await runtime.engine.record(session, organization, [usage])
        except UsageRejected as error:
            return _invalid(error)
        return _answer(decisions[0])

    @strawberry.mutation(description="Hold an amount against the limit for ttlSeconds.")
    async def reserve_usage(
        self,
        info: Info,
        *,
        organization_id: strawberry.ID | None = None,
        resource: str,
        amount: BigInt,
        ttl_seconds: int | None = 300,
        idempotency_key: str,
    ) -> ReserveUsageResult:
        organization = await target_organization(info, usage_caller(info), organization_id)
        if organization is None:
            return NotFoundError(code="NOT_FOUND", message=NOT_FOUND)
        runtime = info.context.runtime
        try:
            async with runtime.db.write() as session:
                outcome = await runtime.engine.reserve(
                    session,
                    organization,
                    resource,
                    int(amount),
                    ttl=dt.timedelta(seconds=300 if ttl_seconds is None else ttl_seconds),
                    idempotency_key=idempotency_key,
                )
        except UsageRejected as error:
            return _invalid(error)
        if outcome.reservation is None:
            refused = _answer(outcome.decision)
            assert not isinstance(refused, UsageDecision)
            return refused
        return Reservation.of(outcome.reservation)

    @strawberry.mutation(description="Turn a reservation into usage of the actual amount.")
    async def commit_reservation(
        self,
        info: Info,
        reservation_id: strawberry.ID,
        amount: BigInt,
        attributes: JSON | None = None,
    ) -> ConsumeUsageResult:
        principal = usage_caller(info)
        organization = await target_organization(info, principal, None)
        assert organization is not None
        runtime = info.context.runtime
        try:
            async with runtime.db.write() as session:
                decision = await runtime.engine.commit(
                    session,
                    organization,
                    str(reservation_id),
                    int(amount),
                    _attributes(attributes),
                )
        except UsageRejected as error:
            return _invalid(error)
        except ReservationError as error:
            return _reservation_error(error, str(reservation_id))
        return _answer(decision)

    @strawberry.mutation(description="Give a reservation back; releasing twice answers the same.")
    async def release_reservation(
        self, info: Info, reservation_id: strawberry.ID
    ) -> ReleaseReservationResult:
        organization = await target_organization(info, usage_caller(info), None)
        assert organization is not None
        runtime = info.context.runtime
        try:
            async with runtime.db.write() as session:
                released = await runtime.engine.release(session, organization, str(reservation_id))
        except ReservationError as error:
            return _reservation_error(error, str(reservation_id))
        return Reservation.of(released)
