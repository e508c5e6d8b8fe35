"""Group commit: concurrent single events share one transaction, whatever their organization.

While a group is being written, the events that arrive queue up and go together in the next
one: each organization's events in arrival order, the organizations in id order, all in one
statement and one commit (`LimitEngine.apply_groups`), so many organizations' single events
cost one WAL flush, not one each. Each caller gets its own decision once the group committed,
so an accepted answer is durable; each organization's decisions are exactly those of applying
its events one by one, in arrival order. A group that fails for another reason than a key race
is written again one organization at a time, so that an error stays with the organization
that caused it.

The queue is bounded: when `max_waiting` events of all organizations already wait, another
is refused at once with `Overloaded` (a 503 with `Retry-After`), not queued without end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core.db import Database
from core.errors import ErrorCode, Unavailable
from core.orgs import Organization
from limits.engine import LimitEngine
from limits.metrics import GROUP_SIZE, count_decisions
from limits.types import Decision, PreparedEvent

MAX_BATCH = 500
MAX_WAITING = 10_000
"""The most events waiting for a group commit in one process, all organizations together."""
RETRY_AFTER_SECONDS = 1


class Overloaded(Unavailable):
    """Too much work is waiting: nothing was recorded; retry after `retry_after_seconds`."""

    retry_after_seconds = RETRY_AFTER_SECONDS

    def __init__(self, waiting: int) -> None:
        super().__init__(
            ErrorCode.OVERLOADED,
            f"{waiting} events are waiting to be recorded, the most this server queues: "
            f"nothing was recorded; retry in {RETRY_AFTER_SECONDS} s",
        )


@dataclass
class _Waiting:
    organization: Organization
    event: PreparedEvent
    answer: asyncio.Future[Decision]


class GroupCommitter:
    """Applies prepared events through the engine, one transaction per group, one group
    being written at a time in this process."""

    def __init__(
        self,
        db: Database,
        engine: LimitEngine,
        max_batch: int = MAX_BATCH,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.db = db
        self.engine = engine
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.waiting = 0
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, organization: Organization, event: PreparedEvent) -> Decision:
        """The event's decision once its group committed; `Overloaded` when the queue is
        full."""
        if self.waiting >= self.max_waiting:
            raise Overloaded(self.waiting)
        waiting = _Waiting(organization, event, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self.waiting += 1
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        try:
            return await waiting.answer
        finally:
            self.waiting -= 1

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._settle(batch)
                GROUP_SIZE.observe(len(batch))
        finally:
            self._writer = None

    async def _settle(self, batch: list[_Waiting]) -> None:
        """Write a group and answer its callers: with its decisions, or with the error of
        its organization (a failed group of several organizations is written again one
        organization at a time)."""
        by_organization: dict[str, list[_Waiting]] = {}
        for waiting in batch:
            by_organization.setdefault(waiting.organization.id, []).append(waiting)
        groups = list(by_organization.values())
        try:
            results = await self.engine.apply_groups(
                self.db, [(group[-1].organization, [w.event for w in group]) for group in groups]
            )
        except Exception as error:
            if len(groups) > 1:
                for group in groups:
                    await self._settle(group)
                return
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(error)
            return
        for group, decisions in zip(groups, results, strict=True):
            count_decisions(decisions)
            for waiting, decision in zip(group, decisions, strict=True):
                if not waiting.answer.done():
                    waiting.answer.set_result(decision)
