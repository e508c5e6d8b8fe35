"""Tally's limit engine: resources from plugins, exact limits, usage."""

from limits.engine import LimitEngine
from limits.hookspecs import hookimpl
from limits.manager import PluginError, ResourceRegistry, create_plugin_manager
from limits.periods import Period, period_containing
from limits.resource import Limit, Policy, Resource
from limits.types import (
    Decision,
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
    "Limit",
    "LimitEngine",
    "Period",
    "PluginError",
    "Policy",
    "PreparedEvent",
    "Reservation",
    "ReservationError",
    "ReserveOutcome",
    "Resource",
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
