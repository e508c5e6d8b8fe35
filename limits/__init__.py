"""Tally's limit engine: resources from plugins, exact limits, usage."""

from limits.engine import (
    Decision,
    LimitEngine,
    ResourceUsage,
    UsageEvent,
    UsageRejected,
    UsageSnapshot,
)
from limits.hookspecs import hookimpl
from limits.manager import PluginError, ResourceRegistry, create_plugin_manager
from limits.periods import Period, period_containing
from limits.resource import Limit, Policy, Resource

__all__ = [
    "Decision",
    "Limit",
    "LimitEngine",
    "Period",
    "PluginError",
    "Policy",
    "Resource",
    "ResourceRegistry",
    "ResourceUsage",
    "UsageEvent",
    "UsageRejected",
    "UsageSnapshot",
    "create_plugin_manager",
    "hookimpl",
    "period_containing",
]
