"""GraphQL of metering: usage mutations, reservations, statistics and alerts."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from graph.errors import (
    IdempotencyKeyReusedError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    ReservationStateError,
    SubscriptionInactiveError,
)
from graph.permissions import Info, UsageCallers, mutation, target
from graph.scalars import BigInt
from limits import Decision
from limits import Reservation as ReservationValue
from limits.service import accepted


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
    UsageDecision
    | LimitExceededError
    | IdempotencyKeyReusedError
    | SubscriptionInactiveError
    | InvalidInputError
    | NotFoundError
    | ReservationStateError,
    strawberry.union("ConsumeUsageResult"),
]
ReserveUsageResult = Annotated[
    Reservation
    | LimitExceededError
    | IdempotencyKeyReusedError
    | SubscriptionInactiveError
    | InvalidInputError
    | NotFoundError,
    strawberry.union("ReserveUsageResult"),
]
ReleaseReservationResult = Annotated[
    Reservation | NotFoundError | ReservationStateError,
    strawberry.union("ReleaseReservationResult"),
]


def _decision(decision: Decision) -> UsageDecision:
    return UsageDecision(
        resource=decision.resource,
        status=UsageStatus(decision.status),
        requested=BigInt(decision.requested),
        used=BigInt(decision.used),
        limit=BigInt(decision.limit) if decision.limit is not None else None,
        remaining=BigInt(decision.remaining) if decision.remaining is not None else None,
        idempotency_key=decision.idempotency_key,
    )


async def _consume_usage(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    resource: str,
    amount: BigInt,
    idempotency_key: str,
    attributes: JSON | None = None,
) -> ConsumeUsageResult:
    organization = await target(info, organization_id)
    usage = info.context.services.usage
    return _decision(
        await usage.consume(organization, resource, int(amount), idempotency_key, attributes)
    )


async def _reserve_usage(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    resource: str,
    amount: BigInt,
    ttl_seconds: int | None = 300,
    idempotency_key: str,
) -> ReserveUsageResult:
    organization = await target(info, organization_id)
    outcome = await info.context.services.usage.reserve(
        organization, resource, int(amount),
        ttl_seconds=ttl_seconds, idempotency_key=idempotency_key,
    )  # fmt: skip
    accepted(outcome.decision)
    assert outcome.reservation is not None
    return Reservation.of(outcome.reservation)


async def _commit_reservation(
    info: Info, reservation_id: strawberry.ID, amount: BigInt, attributes: JSON | None = None
) -> ConsumeUsageResult:
    organization = await target(info)
    usage = info.context.services.usage
    decision = await usage.commit(organization, str(reservation_id), int(amount), attributes)
    return _decision(accepted(decision))


async def _release_reservation(
    info: Info, reservation_id: strawberry.ID
) -> ReleaseReservationResult:
    organization = await target(info)
    return Reservation.of(
        await info.context.services.usage.release(organization, str(reservation_id))
    )


@strawberry.type
class UsageMutation:
    consume_usage = mutation(
        _consume_usage,
        description="Record usage: all or nothing, once per idempotency key.",
        permission=UsageCallers,
    )
    reserve_usage = mutation(
        _reserve_usage,
        description="Hold an amount against the limit for ttlSeconds.",
        permission=UsageCallers,
    )
    commit_reservation = mutation(
        _commit_reservation,
        description="Turn a reservation into usage of the actual amount.",
        permission=UsageCallers,
    )
    release_reservation = mutation(
        _release_reservation,
        description="Give a reservation back; releasing twice answers the same.",
        permission=UsageCallers,
    )
