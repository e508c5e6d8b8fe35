"""How meters read on the page: "0 / 200.0M", "0 / 100.0K", "1 / 5"."""

from __future__ import annotations

from limits.resource import DisplayFormat

_UNITS = ((1_000, "K"), (1_000_000, "M"), (1_000_000_000, "B"), (1_000_000_000_000, "T"))


def format_amount(value: int, style: DisplayFormat = "compact") -> str:
    """An amount as the page shows it: compact (12.3K) or exact (12,345)."""
    if style == "exact":
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude < 1_000:
        return str(value)
    sign = "-" if value < 0 else ""
    size, suffix = next(
        ((size, suffix) for size, suffix in _UNITS if round(magnitude / size, 1) < 1_000),
        _UNITS[-1],
    )
    return f"{sign}{round(magnitude / size, 1):.1f}{suffix}"


def format_meter(used: int, limit: int | None, style: DisplayFormat = "compact") -> str:
    """'used / limit', with '∞' for an unlimited resource."""
    shown = "∞" if limit is None else format_amount(limit, style)
    return f"{format_amount(used, style)} / {shown}"
