"""What a limited resource is, and the limit a plan puts on it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

DisplayFormat = Literal["compact", "exact"]

_KEY = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class ResourceKind(StrEnum):
    """metered: consumed per billing period and reset; gauge: a count that goes up and down."""

    METERED = "metered"
    GAUGE = "gauge"


class Policy(StrEnum):
    """What happens at the limit: refuse, flag as over, or bill the excess."""

    HARD = "hard"
    SOFT = "soft"
    OVERAGE = "overage"


@dataclass(frozen=True, kw_only=True)
class Resource:
    """A limited resource, as a plugin registers it.

    `metered` resources are consumed over a billing period and reset at its end;
    `gauge` resources are a current count that goes up and down and never resets.
    `attributes` names the event attributes the resource accepts; `default_limit`
    applies when a plan does not name the resource (None: unlimited); `order` places
    the meter among the others (lower first, then by registration).
    """

    key: str
    label: str
    unit: str
    kind: ResourceKind | Literal["metered", "gauge"]
    display: DisplayFormat = "compact"
    attributes: tuple[str, ...] = ()
    default_limit: int | None = None
    description: str = ""
    order: int = 100

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"resource key {self.key!r} is not snake_case (like 'voice_minutes')")
        if self.kind not in ("metered", "gauge"):
            raise ValueError(f"resource {self.key!r}: kind must be 'metered' or 'gauge'")
        object.__setattr__(self, "kind", ResourceKind(self.kind))
        if self.display not in ("compact", "exact"):
            raise ValueError(f"resource {self.key!r}: display must be 'compact' or 'exact'")
        if self.default_limit is not None and self.default_limit < 0:
            raise ValueError(f"resource {self.key!r}: default_limit must not be negative")

    @property
    def resets(self) -> bool:
        return self.kind == ResourceKind.METERED


@dataclass(frozen=True)
class Limit:
    """The limit in force on a resource: a number, or None for unlimited, and a policy.

    `overage_cap` (overage policy only) is the most units past the limit, and past any extra
    allowance, that the organization's spend cap pays for; None: overage is not capped.
    """

    value: int | None
    policy: Policy = Policy.HARD
    thresholds: tuple[int, ...] = field(default=(80, 100))
    overage_cap: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.value is None

    def ceiling(self) -> int | None:
        """The most a counter may hold (before any extra allowance), or None where nothing is
        refused: a hard limit, or an overage limit plus what the spend cap pays for."""
        if self.value is None:
            return None
        if self.policy is Policy.HARD:
            return self.value
        if self.policy is Policy.OVERAGE and self.overage_cap is not None:
            return self.value + self.overage_cap
        return None

    @property
    def capped(self) -> bool:
        """Whether overage past the limit is bounded by a spend cap."""
        return self.policy is Policy.OVERAGE and self.overage_cap is not None
