"""Group commit: concurrent single events of one organization share one transaction.

While a batch of an organization is being written, the events that arrive queue up and go
together in the next one. Each caller gets its own decision once the batch committed, so an
accepted answer is durable; the decisions are exactly those of applying the events one by
one, in arrival order.

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
    """Applies prepared events through the engine, one transaction per group."""

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
        self._queues: dict[str, list[_Waiting]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}

    async def apply(self, organization: Organization, event: PreparedEvent) -> Decision:
        """The event's decision once its group committed; `Overloaded` when the queue is
        full."""
        if self.waiting >= self.max_waiting:
            raise Overloaded(self.waiting)
        waiting = _Waiting(organization, event, asyncio.get_running_loop().create_future())
        self._queues.setdefault(organization.id, []).append(waiting)
        self.waiting += 1
        if organization.id not in self._writers:
            self._writers[organization.id] = asyncio.create_task(self._write(organization.id))
        try:
            return await waiting.answer
        finally:
            self.waiting -= 1

    async def _write(self, organization_id: str) -> None:
        try:
            queue = self._queues[organization_id]
            while queue:
                batch, queue[:] = queue[: self.max_batch], queue[self.max_batch :]
                try:
                    decisions = await self._apply(batch)
                except Exception as error:
                    for waiting in batch:
                        if not waiting.answer.done():
                            waiting.answer.set_exception(error)
                    continue
                GROUP_SIZE.observe(len(batch))
                count_decisions(decisions)
                for waiting, decision in zip(batch, decisions, strict=True):
                    if not waiting.answer.done():
                        waiting.answer.set_result(decision)
        finally:
            del self._writers[organization_id]
            if not self._queues.get(organization_id):
                self._queues.pop(organization_id, None)

    async def _apply(self, batch: list[_Waiting]) -> list[Decision]:
        """One transaction for the batch (`LimitEngine.apply_alone`)."""
        events = [waiting.event for waiting in batch]
        return await self.engine.apply_alone(self.db, batch[-1].organization, events, whole=False)
