"""Time comes from an injectable clock, so tests and the demo can move through periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current instant, always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until moved; for tests and demos."""

    def __init__(self, instant: datetime) -> None:
        self._instant = _as_utc(instant)

    def now(self) -> datetime:
        return self._instant

    def set(self, instant: datetime) -> None:
        self._instant = _as_utc(instant)

    def advance(self, delta: timedelta) -> None:
        self._instant += delta


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("a clock needs a timezone-aware datetime")
    return instant.astimezone(UTC)
