"""GraphQL of metering: usage mutations, reservations, statistics and alerts."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

import billing
from graph.billing import Money
from graph.errors import (
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    ReservationStateError,
    bad_input,
)
from graph.permissions import Info, member, target_organization, usage_caller
from graph.scalars import BigInt
from limits import Decision, ReservationError, UsageInput, UsageRejected
from limits import Reservation as ReservationValue
from limits import repository as limits_repository
from limits.periods import GAUGE_EPOCH
from limits.stats import Granularity as StatsGranularity
from limits.stats import StatsError, usage_stats
from tally.orgs import Organization as OrganizationRow

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


def _answer(decision: Decision) -> UsageDecision | LimitExceededError:
    if decision.status == "rejected":
        return LimitExceededError(
            code="LIMIT_EXCEEDED",
            message=f"{decision.resource}: {decision.requested} more would pass the limit of "
            f"{decision.limit} ({decision.used} used)",
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


def _invalid(error: UsageRejected) -> InvalidInputError:
    return InvalidInputError(code=error.code, message=error.message, field=None)


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
            answer = _answer(outcome.decision)
            assert isinstance(answer, LimitExceededError)
            return answer
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


def _money(micros: int, currency: str) -> Money:
    minor = Decimal(micros).scaleb(billing.money.minor_digits(currency) - 6)
    rounded = int(minor.to_integral_value(rounding=ROUND_HALF_UP))
    return Money.of(billing.Money(rounded, currency))


@strawberry.enum
class Granularity(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.type(description="Tokens and their cost in one time bucket.")
class UsagePoint:
    start: dt.datetime
    tokens: BigInt
    cost: Money


@strawberry.type(description="A model's or an action's part of the tokens and cost.")
class UsageShare:
    key: str
    tokens: BigInt
    cost: Money
    share: float = strawberry.field(description="Fraction of all tokens, 0 to 1.")
    priced: bool = strawberry.field(description="False when the model has no price: cost 0.")


@strawberry.type(description="AI token usage and cost, from hourly rollups.")
class UsageStats:
    start: dt.datetime = strawberry.field(name="from")
    end: dt.datetime = strawberry.field(name="to")
    timezone: str
    total_tokens: BigInt
    total_cost: Money
    tokens_over_time: list[UsagePoint]
    by_model: list[UsageShare]
    by_action: list[UsageShare]
    unpriced_models: list[str]


@strawberry.type(description="A usage threshold crossed (once per period and threshold).")
class UsageAlert:
    resource: str
    threshold: int = strawberry.field(description="Percent of the limit.")
    used: BigInt
    limit: BigInt
    period_start: dt.datetime
    crossed_at: dt.datetime


async def _usage_stats(
    root: Parent[OrganizationRow],
    info: Info,
    start: Annotated[dt.datetime, strawberry.argument(name="from")],
    end: Annotated[dt.datetime, strawberry.argument(name="to")],
    granularity: Granularity | None = Granularity.DAY,
    timezone: str | None = "UTC",
) -> UsageStats:
    granularity = granularity or Granularity.DAY
    timezone = timezone or "UTC"
    member(info)
    runtime = info.context.runtime
    currency = runtime.engine.prices.currency
    try:
        async with runtime.db.read() as session:
            stats = await usage_stats(
                session,
                root,
                resource="tokens",
                start=start,
                end=end,
                granularity=StatsGranularity(granularity.value),
                timezone=timezone,
                currency=currency,
            )
    except StatsError as error:
        raise bad_input(str(error)) from None

    def share(value: Any) -> UsageShare:
        return UsageShare(
            key=value.key,
            tokens=BigInt(value.amount),
            cost=_money(value.cost_micros, currency),
            share=value.share,
            priced=value.priced,
        )

    return UsageStats(
        start=stats.start,
        end=stats.end,
        timezone=timezone,
        total_tokens=BigInt(stats.total_amount),
        total_cost=_money(stats.total_cost_micros, currency),
        tokens_over_time=[
            UsagePoint(start=p.start, tokens=BigInt(p.amount), cost=_money(p.cost_micros, currency))
            for p in stats.over_time
        ],
        by_model=[share(s) for s in stats.by_model],
        by_action=[share(s) for s in stats.by_action],
        unpriced_models=stats.unpriced_models,
    )


async def _alerts(root: Parent[OrganizationRow], info: Info) -> list[UsageAlert]:
    runtime = info.context.runtime
    period = runtime.engine.period(root)
    async with runtime.db.read() as session:
        rows = await limits_repository.list_alerts(session, root.id, [period.start, GAUGE_EPOCH])
    return [
        UsageAlert(
            resource=row.resource,
            threshold=row.threshold,
            used=BigInt(row.used),
            limit=BigInt(row.limit_value),
            period_start=row.period_start,
            crossed_at=row.crossed_at,
        )
        for row in rows
    ]


def organization_fields() -> dict[str, Any]:
    """The statistics and alerts of `Organization`."""
    return {
        "usage_stats": strawberry.field(resolver=_usage_stats),
        "alerts": strawberry.field(
            resolver=_alerts, description="Thresholds crossed this period, newest first."
        ),
    }
