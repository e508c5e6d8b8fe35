"""The GraphQL enums: the domain's own enums, exposed under their schema names.

Each is `strawberry.enum` applied to the domain enum itself, never a mirrored copy; import
them from here so that they are registered before any type uses them.
"""

from __future__ import annotations

import strawberry

from billing.dunning import SubscriptionStatus
from billing.provider import Timing
from core.errors import ErrorCode
from core.orgs import Role
from limits import Policy, ResourceKind
from limits.stats import Granularity

strawberry.enum(ErrorCode, description="Why a mutation failed; stable, for programs.")
strawberry.enum(Role, description="A member's role.")
strawberry.enum(Policy, name="LimitPolicy", description="What happens at the limit.")
strawberry.enum(
    ResourceKind, description="metered: consumed per billing period and reset; gauge: a count."
)
strawberry.enum(
    Timing,
    name="PlanChangeTiming",
    description="When a change takes effect; AUTO: upgrades now, downgrades at the period's end.",
)
strawberry.enum(Granularity)
strawberry.enum(SubscriptionStatus, description="A subscription's payment state.")

__all__ = [
    "ErrorCode",
    "Granularity",
    "Policy",
    "ResourceKind",
    "Role",
    "SubscriptionStatus",
    "Timing",
]
