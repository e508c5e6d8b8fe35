"""GraphQL types of usage: meters, resource definitions, and the Usage type built from plugins.

`Usage` gets one camelCase field per registered resource when the schema is built, so a
partner's `voice_minutes` is `usage { voiceMinutes }` without an edit here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

import strawberry
from strawberry import Parent

import limits
from core.orgs import Organization as OrganizationRow
from graph.permissions import Info
from graph.scalars import BigInt
from limits import Policy, ResourceKind, UsageSnapshot


@strawberry.type(description="A limited resource that a plugin registers.")
class ResourceDefinition:
    key: str
    label: str
    unit: str
    kind: ResourceKind
    description: str
    attributes: list[str]

    @classmethod
    def of(cls, resource: limits.Resource) -> ResourceDefinition:
        return cls(
            key=resource.key,
            label=resource.label,
            unit=resource.unit,
            kind=ResourceKind(resource.kind),
            description=resource.description,
            attributes=list(resource.attributes),
        )


@strawberry.type(description='One meter: usage against the limit, e.g. "0 / 200.0M".')
class ResourceUsage:
    key: str
    label: str
    unit: str
    kind: ResourceKind
    used: BigInt = strawberry.field(
        description="What the meter shows: Tally's counter, or a plugin's own count "
        "(tally_display_usage, display only)"
    )
    limit: BigInt | None = strawberry.field(
        description="null: unlimited; the plan's limit plus the top-up allowance (extra)"
    )
    plan_limit: BigInt | None = strawberry.field(description="The plan's own limit.")
    extra: BigInt = strawberry.field(
        description="Top-ups counted in the limit: drawn this period plus what remains."
    )
    remaining: BigInt | None
    percent: float
    resets: bool
    policy: Policy
    display: str

    @classmethod
    def of(cls, meter: limits.ResourceUsage) -> ResourceUsage:
        resource, limit = meter.resource, meter.limit
        return cls(
            key=resource.key,
            label=resource.label,
            unit=resource.unit,
            kind=ResourceKind(resource.kind),
            used=BigInt(meter.shown),
            limit=BigInt(meter.total_limit) if meter.total_limit is not None else None,
            plan_limit=BigInt(limit.value) if limit.value is not None else None,
            extra=BigInt(meter.extra),
            remaining=BigInt(meter.remaining) if meter.remaining is not None else None,
            percent=meter.percent,
            resets=resource.resets,
            policy=limit.policy,
            display=meter.display,
        )


def _percent_used(root: Parent[UsageSnapshot]) -> float:
    return root.percent_used


def _period_start(root: Parent[UsageSnapshot]) -> datetime:
    return root.period.start


def _period_end(root: Parent[UsageSnapshot]) -> datetime:
    return root.period.end


def _resets_on(root: Parent[UsageSnapshot]) -> date:
    return root.period.resets_on


def _resources(root: Parent[UsageSnapshot]) -> list[ResourceUsage]:
    return [ResourceUsage.of(meter) for meter in root.resources]


def _meter(key: str) -> Callable[..., ResourceUsage]:
    def resolve(root: Parent[UsageSnapshot]) -> ResourceUsage:
        return ResourceUsage.of(root.get(key))

    return resolve


def build_usage_type(resources: Iterable[limits.Resource]) -> type:
    """The `Usage` type: fixed fields, then one field per registered resource."""
    namespace: dict[str, Any] = {
        "percent_used": strawberry.field(
            resolver=_percent_used, description="The highest percent among limited resources."
        ),
        "period_start": strawberry.field(resolver=_period_start),
        "period_end": strawberry.field(resolver=_period_end),
        "resets_on": strawberry.field(resolver=_resets_on),
        "resources": strawberry.field(resolver=_resources, description="Every meter, in order."),
    }
    for resource in resources:
        if resource.key in namespace:
            raise limits.PluginError(f"resource key {resource.key!r} clashes with a Usage field")
        namespace[resource.key] = strawberry.field(
            resolver=_meter(resource.key), description=resource.label
        )
    usage_type = type("Usage", (), namespace)
    return strawberry.type(usage_type, description="The organization's meters this period.")


def organization_fields(usage_type: type) -> dict[str, Any]:
    """The usage side of `Organization`, around the plugin-made `usage_type`."""

    async def usage(root: Parent[OrganizationRow], info: Info) -> Any:
        return await info.context.loaders.usage.load(root.id)

    usage.__annotations__["return"] = usage_type
    return {"usage": strawberry.field(resolver=usage)}
