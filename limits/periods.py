"""Billing periods from an anchor day: monthly, starting at 00:00 UTC on the anchor day.

An anchor past a month's last day is clamped to that day (31 -> 28 or 29 in February),
month by month, so an anchor of 31 comes back to the 31st in March.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime

GAUGE_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The period start under which gauge counters are kept: they never reset."""


@dataclass(frozen=True)
class Period:
    """A billing period: `start` included, `end` excluded."""

    start: datetime
    end: datetime

    @property
    def resets_on(self) -> date:
        return self.end.date()

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def boundary(year: int, month: int, anchor_day: int) -> datetime:
    """The instant a period starts in that month."""
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=UTC)


def _shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_containing(instant: datetime, anchor_day: int) -> Period:
    """The billing period that holds `instant`."""
    if not 1 <= anchor_day <= 31:
        raise ValueError(f"anchor day must be 1 to 31, not {anchor_day}")
    if instant.tzinfo is None:
        raise ValueError("period_containing needs a timezone-aware instant")
    instant = instant.astimezone(UTC)
    year, month = instant.year, instant.month
    if instant < boundary(year, month, anchor_day):
        year, month = _shift(year, month, -1)
    next_year, next_month = _shift(year, month, 1)
    return Period(boundary(year, month, anchor_day), boundary(next_year, next_month, anchor_day))


def ordinal(day: int) -> str:
    """'1st', '2nd', '23rd', '31st': how the page says the reset day."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"
