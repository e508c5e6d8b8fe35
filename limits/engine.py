"""The limit engine: check, consume, reserve/commit/release and usage, exactly. No SQL here."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pluggy
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.db import Database, on_commit
from core.errors import ErrorCode, NotFound
from core.ids import new_id
from core.orgs import Organization
from limits import ledger, ledger_pg, repository
from limits.manager import ResourceRegistry
from limits.periods import GAUGE_EPOCH, Period, period_containing
from limits.pricing import PriceTable
from limits.resource import Limit, Resource
from limits.types import (
    Decision,
    IdempotencyKeyReused,
    PreparedEvent,
    Reservation,
    ReservationError,
    ReserveOutcome,
    ResourceUsage,
    Status,
    UsageInput,
    UsageRejected,
    UsageSnapshot,
    UsageSuspended,
    refuse_reused,
)
from limits.validation import Preparer

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=1)
MAX_TTL_SECONDS = 86_400
KEY_RACE_RETRIES = 3


class LimitEngine:
    """Exact limits over the resources that plugins register.

    Every operation takes the caller's session; writes happen in the caller's transaction,
    and observers (`tally_usage_recorded`, `tally_threshold_crossed`,
    `tally_spend_cap_crossed`) run after it commits. An organization whose usage is suspended
    (`usage_suspended_from` passed) is refused metered usage with `UsageSuspended`
    (SUBSCRIPTION_INACTIVE) before anything is written; gauges keep working.
    """

    def __init__(
        self,
        plugins: pluggy.PluginManager,
        clock: Clock,
        prices: PriceTable | None = None,
        grace: timedelta = DEFAULT_GRACE,
        *,
        ledger_function: bool = True,
    ) -> None:
        self.plugins = plugins
        self.clock = clock
        self.registry = ResourceRegistry(plugins)
        self.prices = prices or PriceTable.load()
        self.preparer = Preparer(self.registry, plugins, self.prices, grace)
        self.ledger_function = ledger_function

    def _in_function(self, session: AsyncSession) -> bool:
        """Whether groups are recorded by the ledger function: on PostgreSQL
        (`ledger_function=False` keeps the Python reference there too, for the tests that
        compare both); on SQLite the Python reference records them."""
        return self.ledger_function and session.get_bind().dialect.name == "postgresql"

    def _writer(self, session: AsyncSession) -> ledger.Writer:
        """The ledger that records a group (see `_in_function`)."""
        return ledger_pg.apply if self._in_function(session) else ledger.apply

    def resource(self, key: str) -> Resource:
        return self.preparer.resource(key)

    def limit(self, organization: Organization, resource: Resource) -> Limit:
        limit: Limit | None = self.plugins.hook.tally_resolve_limit(
            organization=organization, resource=resource
        )
        return limit if limit is not None else Limit(resource.default_limit)

    def period(self, organization: Organization, at: datetime | None = None) -> Period:
        """The organization's billing period holding `at` (default: now)."""
        return period_containing(at or self.clock.now(), organization.billing_anchor_day)

    def prepare(
        self, organization: Organization, usage: Sequence[UsageInput], *, settling: bool = False
    ) -> list[PreparedEvent]:
        """Validate a batch whole; UsageRejected (naming the event) before anything is written,
        UsageSuspended when it holds metered usage and the organization's usage is suspended
        (unless `settling` a reservation made before)."""
        now = self.clock.now()
        prepared = self.preparer.prepare(organization, usage, now, self.period(organization, now))
        if not settling:
            self.refuse_if_suspended(organization, (event.resource for event in prepared))
        return prepared

    def refuse_if_suspended(
        self, organization: Organization, resources: Iterable[Resource]
    ) -> None:
        """Raise UsageSuspended when the organization's usage is suspended (its
        `usage_suspended_from` has come) and any of `resources` is metered."""
        suspended_from = organization.usage_suspended_from
        if suspended_from is None or suspended_from > self.clock.now():
            return
        for resource in resources:
            if resource.resets:
                raise UsageSuspended(resource.key, suspended_from)

    def _limits(
        self, organization: Organization, events: Sequence[PreparedEvent]
    ) -> dict[str, Limit]:
        resources = {event.resource.key: event.resource for event in events}
        return {key: self.limit(organization, resource) for key, resource in resources.items()}

    async def apply(
        self,
        session: AsyncSession,
        organization: Organization,
        events: Sequence[PreparedEvent],
        *,
        nested: bool = True,
    ) -> list[Decision]:
        """Record prepared events in order, each all or nothing, each key once.

        With `nested` the events are one request's: when one reuses an idempotency key (another
        resource or amount) the whole batch is undone and refused (`IdempotencyKeyReused`,
        naming the event); without, each `reused` decision is its own caller's to refuse.

        A key inserted meanwhile by a concurrent transaction (the same key on another
        counter) is a KeyRace: with `nested`, the batch runs in a savepoint and is decided again
        inside the caller's transaction; without, KeyRace reaches the caller, who retries the
        whole transaction (two round trips fewer on the hot path)."""
        if not events:
            return []
        limits = self._limits(organization, events)
        if not nested:
            write = self._writer(session)
            applied = await write(session, organization, events, limits, self.clock.now())
            on_commit(session, partial(self._notify, organization, applied))
            return applied.decisions
        for attempt in range(KEY_RACE_RETRIES + 1):
            savepoint = await session.begin_nested()
            try:
                applied = await self._writer(session)(
                    session, organization, events, limits, self.clock.now()
                )
            except ledger.KeyRace:
                await savepoint.rollback()
                if attempt == KEY_RACE_RETRIES:
                    raise
                continue
            if any(decision.status == "reused" for decision in applied.decisions):
                await savepoint.rollback()
                refuse_reused(applied.decisions)
            await savepoint.commit()
            on_commit(session, partial(self._notify, organization, applied))
            return applied.decisions
        raise AssertionError("unreachable")

    def _transaction(self, db: Database) -> AbstractAsyncContextManager[AsyncSession]:
        """A write session for a group: with the ledger function (PostgreSQL), one whose
        statement commits as it ends (`Database.statement`): the group is one round trip and
        its counters are unlocked as soon as PostgreSQL has committed it."""
        return db.statement() if self.ledger_function else db.write()

    async def apply_batch(
        self, db: Database, organization: Organization, events: Sequence[PreparedEvent]
    ) -> list[Decision]:
        """Apply one request's batch in a transaction of its own, without a savepoint (two
        round trips fewer): a key race (the same key recorded meanwhile on another counter,
        rare) retries the whole transaction, and a key reused with another resource or amount
        refuses the batch whole (`IdempotencyKeyReused`), nothing written: the transaction
        commits only after that check."""
        for attempt in range(KEY_RACE_RETRIES + 1):
            try:
                async with db.write() as session:
                    decisions = await self.apply(session, organization, events, nested=False)
                    refuse_reused(decisions)
                    return decisions
            except ledger.KeyRace:
                if attempt == KEY_RACE_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def apply_groups(
        self, db: Database, groups: Sequence[tuple[Organization, Sequence[PreparedEvent]]]
    ) -> list[list[Decision]]:
        """Several organizations' prepared events (a group commit) in one transaction of their
        own, the organizations in id order (the order in which every multi-organization write
        locks counters); the decisions come back in the groups' order. With the ledger
        function, one statement; otherwise each organization through `apply` in the same
        transaction. A key race in any retries them all; reused keys go to their callers."""
        order = sorted(range(len(groups)), key=lambda index: groups[index][0].id)
        chosen = [groups[index] for index in order]
        for attempt in range(KEY_RACE_RETRIES + 1):
            try:
                async with self._transaction(db) as session:
                    decided = await self._apply_groups(session, chosen)
            except ledger.KeyRace:
                if attempt == KEY_RACE_RETRIES:
                    raise
                continue
            answers: list[list[Decision]] = [[] for _ in groups]
            for index, decisions in zip(order, decided, strict=True):
                answers[index] = decisions
            return answers
        raise AssertionError("unreachable")

    async def _apply_groups(
        self, session: AsyncSession, groups: Sequence[tuple[Organization, Sequence[PreparedEvent]]]
    ) -> list[list[Decision]]:
        if not self._in_function(session):
            return [
                await self.apply(session, organization, events, nested=False)
                for organization, events in groups
            ]
        limited = [
            (organization, events, self._limits(organization, events))
            for organization, events in groups
        ]
        applied = await ledger_pg.apply_groups(session, limited, self.clock.now())
        for (organization, _), one in zip(groups, applied, strict=True):
            on_commit(session, partial(self._notify, organization, one))
        return [one.decisions for one in applied]

    async def record(
        self, session: AsyncSession, organization: Organization, usage: Sequence[UsageInput]
    ) -> list[Decision]:
        """Validate a batch whole, then apply it."""
        return await self.apply(session, organization, self.prepare(organization, usage))

    async def consume(
        self,
        session: AsyncSession,
        organization: Organization,
        key: str,
        amount: int,
        *,
        idempotency_key: str,
        attributes: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> Decision:
        """Record one usage event if the limit allows; a gauge takes a negative amount back."""
        usage = UsageInput(key, amount, idempotency_key, occurred_at, attributes or {})
        return (await self.record(session, organization, [usage]))[0]

    async def check(
        self, session: AsyncSession, organization: Organization, usage: Sequence[UsageInput]
    ) -> list[Decision]:
        """What recording this batch would decide now; records nothing. A key reused with
        another resource or amount is refused as recording would refuse it."""
        decisions = await self._check(session, organization, self.prepare(organization, usage))
        refuse_reused(decisions)
        return decisions

    async def _check(
        self, session: AsyncSession, organization: Organization, events: Sequence[PreparedEvent]
    ) -> list[Decision]:
        states = await repository.read_counters(
            session, organization.id, sorted({e.counter for e in events})
        )
        decisions, _ = await ledger.decide(
            session,
            organization,
            events,
            self._limits(organization, events),
            states,
            self.clock.now(),
            sweep=False,
        )
        return decisions

    async def reserve(
        self,
        session: AsyncSession,
        organization: Organization,
        key: str,
        amount: int,
        *,
        ttl: timedelta,
        idempotency_key: str,
    ) -> ReserveOutcome:
        """Hold `amount` against the limit until committed, released, or `ttl` has passed."""
        resource = self.resource(key)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise UsageRejected(
                ErrorCode.INVALID_AMOUNT, "a reservation needs a positive integer amount"
            )
        if not timedelta(seconds=1) <= ttl <= timedelta(seconds=MAX_TTL_SECONDS):
            raise UsageRejected(
                ErrorCode.INVALID_TTL, f"ttl must be 1 to {MAX_TTL_SECONDS} seconds"
            )
        if not idempotency_key or len(idempotency_key) > 200:
            raise UsageRejected(ErrorCode.MISSING_IDEMPOTENCY_KEY, "an idempotency key is required")
        self.refuse_if_suspended(organization, [resource])
        now = self.clock.now()
        limit = self.limit(organization, resource)
        counter = (
            resource.key,
            self.period(organization).start if resource.resets else GAUGE_EPOCH,
        )
        savepoint = await session.begin_nested()
        states = await repository.lock_counters(session, organization.id, [counter])
        state = states[counter]
        held = state.reserved
        await ledger.release_expired(session, organization.id, states, now, sweep=True)

        allowances = ledger.Allowances(session, organization.id, lock=True)

        def decision(status: Status, requested: int) -> Decision:
            extra = state.drawn + allowances.known(resource.key) if resource.resets else 0
            return Decision(resource.key, status, requested, state.used, limit.value,
                            limit.policy, idempotency_key, state.reserved, extra)  # fmt: skip

        existing = await repository.find_reservation(session, organization.id, key=idempotency_key)
        if existing is not None:
            if (existing.resource, existing.amount) != (resource.key, amount):
                await savepoint.rollback()
                raise IdempotencyKeyReused(
                    idempotency_key, existing.resource, int(existing.amount),
                    what="a reservation of ",
                )  # fmt: skip
            if state.reserved != held:
                await repository.write_counters(session, organization.id, states)
            await savepoint.commit()
            return ReserveOutcome(_reservation(existing), decision("duplicate", existing.amount))
        if ledger.passes_plan(resource, state, amount, limit):
            await allowances.read(resource.key)
        if not ledger.fits(state, amount, limit, allowances.known(resource.key)):
            await repository.write_counters(session, organization.id, states)
            await savepoint.commit()
            return ReserveOutcome(None, decision("rejected", amount))
        state.reserved += amount
        values = {
            "id": new_id(),
            "organization_id": organization.id,
            "resource": resource.key,
            "period_start": counter[1],
            "amount": amount,
            "idempotency_key": idempotency_key,
            "status": "held",
            "created_at": now,
            "expires_at": now + ttl,
        }
        if not await repository.insert_reservation(session, values):
            await savepoint.rollback()
            return await self.reserve(
                session, organization, key, amount, ttl=ttl, idempotency_key=idempotency_key
            )
        await repository.write_counters(session, organization.id, states)
        await savepoint.commit()
        reservation = Reservation(
            str(values["id"]), resource.key, amount, "held", now + ttl, idempotency_key
        )
        return ReserveOutcome(reservation, decision("accepted", amount))

    async def commit(
        self,
        session: AsyncSession,
        organization: Organization,
        reservation_id: str,
        amount: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Turn a reservation into usage of `amount` (its held amount is freed either way).

        The usage event is keyed by the reservation, so committing twice is a duplicate; the
        decision answers with the reservation's own idempotency key."""
        held = await repository.find_reservation(session, organization.id, id=reservation_id)
        if held is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no reservation {reservation_id!r}")
        usage = UsageInput(held.resource, amount, f"reservation:{held.id}", None, attributes or {})
        if amount < 0:
            raise UsageRejected(
                ErrorCode.INVALID_AMOUNT, "a commit needs an amount of zero or more"
            )
        if held.status == "committed":
            replayed = (
                await self._check(
                    session, organization, self.prepare(organization, [usage], settling=True)
                )
            )[0]
            replayed = replace(replayed, idempotency_key=held.idempotency_key)
            refuse_reused([replayed])
            return replayed
        if held.status == "released":
            raise ReservationError(
                ErrorCode.RESERVATION_RELEASED,
                f"reservation {reservation_id} was released",
                reservation_id,
            )
        if held.status != "held" or held.expires_at <= self.clock.now():
            raise ReservationError(
                ErrorCode.RESERVATION_EXPIRED,
                f"reservation {reservation_id} is {_state(held, self.clock)}",
                reservation_id,
            )
        event = self.prepare(organization, [usage], settling=True)[0]
        held_counter = (held.resource, held.period_start)
        late = event.period_start != held.period_start
        if late:
            # The reservation's period ended (and may be invoiced): the usage counts in the
            # period where it is recorded, checked like a new event; the hold is freed on the
            # old counter, locked first (key order: the older period sorts first).
            held_states = await repository.lock_counters(session, organization.id, [held_counter])
            event = replace(event, reservation_id=held.id)
        else:
            event = replace(event, reservation_id=held.id, reserved_amount=held.amount)
        decision = replace(
            (await self.apply(session, organization, [event]))[0],
            idempotency_key=held.idempotency_key,
        )
        if decision.status == "accepted" and not await repository.settle_reservation(
            session, held.id, "committed", self.clock.now()
        ):
            raise ReservationError(
                ErrorCode.RESERVATION_EXPIRED,
                f"reservation {reservation_id} expired while committing",
                reservation_id,
            )
        if late and decision.status == "accepted":
            held_states[held_counter].reserved -= held.amount
            await repository.write_counters(session, organization.id, held_states)
        return decision

    async def release(
        self, session: AsyncSession, organization: Organization, reservation_id: str
    ) -> Reservation:
        """Give a held reservation back; releasing twice answers the same."""
        held = await repository.find_reservation(session, organization.id, id=reservation_id)
        if held is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no reservation {reservation_id!r}")
        if held.status == "committed":
            raise ReservationError(
                ErrorCode.ALREADY_COMMITTED,
                f"reservation {reservation_id} was committed",
                reservation_id,
            )
        counter = (held.resource, held.period_start)
        states = await repository.lock_counters(session, organization.id, [counter])
        if await repository.settle_reservation(session, held.id, "released", None):
            states[counter].reserved -= held.amount
            await repository.write_counters(session, organization.id, states)
            held.status = "released"
        return _reservation(held)

    async def usage(
        self, session: AsyncSession, organization: Organization, at: datetime | None = None
    ) -> UsageSnapshot:
        """Every resource's meter in the period holding `at` (default: now). Gauges show their
        current count whatever the period. Holds expired by now are left out of `reserved`; a
        `tally_display_usage` plugin's count is the meter's `displayed`, next to the counter."""
        now = self.clock.now()
        period = self.period(organization, at)
        counters, extra = await repository.meter_states(
            session, organization.id, [period.start, GAUGE_EPOCH]
        )
        stale = (
            await repository.expired_holds(session, organization.id, now)
            if any(state.reserved for state in counters.values())
            else {}
        )
        meters = []
        for resource in self.registry:
            key = (resource.key, period.start if resource.resets else GAUGE_EPOCH)
            state = counters.get(key, repository.CounterState(0, 0))
            meters.append(
                ResourceUsage(
                    resource,
                    state.used,
                    self.limit(organization, resource),
                    state.reserved - stale.get(key, 0),
                    state.drawn,
                    extra.get(resource.key, 0) if resource.resets else 0,
                    await self._displayed_usage(session, organization, resource, period),
                )
            )
        return UsageSnapshot(period, tuple(meters))

    async def _displayed_usage(
        self, session: AsyncSession, organization: Organization, resource: Resource, period: Period
    ) -> int | None:
        """The count a `tally_display_usage` plugin has a meter show instead of the counter's,
        or None."""
        answer = self.plugins.hook.tally_display_usage(
            session=session,
            organization=organization,
            resource=resource,
            period=period if resource.resets else None,
        )
        if inspect.isawaitable(answer):
            answer = await answer
        return None if answer is None else int(answer)

    def _notify(self, organization: Organization, applied: ledger.Applied) -> None:
        for key, events in applied.recorded.items():
            self._observe(
                "tally_usage_recorded",
                organization=organization,
                resource=self.resource(key),
                events=events,
            )
        for resource, threshold, decision in applied.crossed:
            self._observe(
                "tally_threshold_crossed",
                organization=organization,
                resource=resource,
                threshold=threshold,
                usage=decision,
            )
        for resource, threshold, decision in applied.capped:
            self._observe(
                "tally_spend_cap_crossed",
                organization=organization,
                resource=resource,
                threshold=threshold,
                usage=decision,
            )

    def _observe(self, hook: str, **kwargs: Any) -> None:
        try:
            getattr(self.plugins.hook, hook)(**kwargs)
        except Exception:
            log.exception("a %s observer failed", hook)


def _reservation(row: Any) -> Reservation:
    return Reservation(
        row.id, row.resource, int(row.amount), row.status, row.expires_at, row.idempotency_key
    )


def _state(row: Any, clock: Clock) -> str:
    if row.status == "held" and row.expires_at <= clock.now():
        return "expired"
    return str(row.status)
