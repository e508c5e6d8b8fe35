from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from limits.periods import ordinal, period_containing
from tests.support import at


@pytest.mark.parametrize(
    ("instant", "anchor", "start", "end"),
    [
        (at(2026, 3, 15, 12), 1, at(2026, 3, 1), at(2026, 4, 1)),
        (at(2026, 2, 10), 31, at(2026, 1, 31), at(2026, 2, 28)),
        (at(2026, 2, 28), 31, at(2026, 2, 28), at(2026, 3, 31)),
        (at(2028, 2, 28, 23, 59), 31, at(2028, 1, 31), at(2028, 2, 29)),
        (at(2028, 2, 29), 31, at(2028, 2, 29), at(2028, 3, 31)),
        (at(2028, 2, 29), 30, at(2028, 2, 29), at(2028, 3, 30)),
        (at(2100, 2, 28), 29, at(2100, 2, 28), at(2100, 3, 29)),
        (at(2026, 4, 30), 31, at(2026, 4, 30), at(2026, 5, 31)),
        (at(2026, 1, 5), 15, at(2025, 12, 15), at(2026, 1, 15)),
        (at(2026, 12, 20), 15, at(2026, 12, 15), at(2027, 1, 15)),
    ],
)
def test_period_containing(instant: datetime, anchor: int, start: datetime, end: datetime) -> None:
    period = period_containing(instant, anchor)
    assert (period.start, period.end) == (start, end)
    assert instant in period


def test_exact_boundary_instant_opens_the_new_period() -> None:
    boundary = at(2026, 4, 1)
    assert period_containing(boundary, 1).start == boundary
    before = period_containing(boundary - timedelta(microseconds=1), 1)
    assert before.end == boundary
    assert boundary not in before


def test_anchor_31_walks_the_year_back_to_the_31st() -> None:
    starts = []
    instant = at(2026, 1, 31)
    for _ in range(12):
        period = period_containing(instant, 31)
        starts.append(period.start.date())
        instant = period.end
    assert starts == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30),
        date(2026, 5, 31), date(2026, 6, 30), date(2026, 7, 31), date(2026, 8, 31),
        date(2026, 9, 30), date(2026, 10, 31), date(2026, 11, 30), date(2026, 12, 31),
    ]  # fmt: skip


def test_other_timezones_are_read_as_the_same_instant() -> None:
    from zoneinfo import ZoneInfo

    paris_midnight = datetime(2026, 4, 1, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert period_containing(paris_midnight, 1).start == at(2026, 3, 1)


def test_resets_on_is_the_end_date() -> None:
    assert period_containing(at(2026, 3, 15), 1).resets_on == date(2026, 4, 1)


@pytest.mark.parametrize("anchor", [0, 32, -1])
def test_bad_anchor_is_refused(anchor: int) -> None:
    with pytest.raises(ValueError, match="anchor day"):
        period_containing(at(2026, 1, 1), anchor)


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_containing(datetime(2026, 1, 1), 1)


@pytest.mark.parametrize(
    ("day", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                      (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"), (31, "31st")]
)  # fmt: skip
def test_ordinal(day: int, text: str) -> None:
    assert ordinal(day) == text
