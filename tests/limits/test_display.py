from __future__ import annotations

import pytest

from limits.display import format_amount, format_meter


@pytest.mark.parametrize(
    ("used", "limit", "text"),
    [
        (0, 200_000_000, "0 / 200.0M"),
        (0, 100_000, "0 / 100.0K"),
        (1, 5, "1 / 5"),
        (1, 10, "1 / 10"),
        (12_345, 100_000, "12.3K / 100.0K"),
        (999, 1_000, "999 / 1.0K"),
        (1_500_000_000, 2_000_000_000, "1.5B / 2.0B"),
        (7, None, "7 / ∞"),
    ],
)
def test_meter_reads_as_the_page_shows_it(used: int, limit: int | None, text: str) -> None:
    assert format_meter(used, limit) == text


def test_rounding_never_shows_a_thousand_of_a_unit() -> None:
    assert format_amount(999_960) == "1.0M"
    assert format_amount(999_949) == "999.9K"


def test_exact_style() -> None:
    assert format_meter(12_345, 100_000, "exact") == "12,345 / 100,000"
