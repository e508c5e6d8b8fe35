"""Tally's limit engine: resources from plugins, exact limits, usage."""

from core.errors import ErrorCode
from limits.engine import LimitEngine
from limits.hookspecs import hookimpl
from limits.manager import PluginError, ResourceRegistry, create_plugin_manager
from limits.periods import Period, period_containing
from limits.resource import Limit, Policy, Resource, ResourceKind
from limits.types import (
    Decision,
    LimitExceeded,
    PreparedEvent,
    Reservation,
    ReservationError,
    ReserveOutcome,
    ResourceUsage,
    UsageEvent,
    UsageInput,
    UsageRejected,
    UsageSnapshot,
)

__all__ = [
    "Decision",
    "ErrorCode",
    "Limit",
    "LimitEngine",
    "LimitExceeded",
    "Period",
    "PluginError",
    "Policy",
    "PreparedEvent",
    "Reservation",
    "ReservationError",
    "ReserveOutcome",
    "Resource",
    "ResourceKind",
    "ResourceRegistry",
    "ResourceUsage",
    "UsageEvent",
    "UsageInput",
    "UsageRejected",
    "UsageSnapshot",
    "create_plugin_manager",
    "hookimpl",
    "period_containing",
]
