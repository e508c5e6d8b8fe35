"""The hooks of Tally's limit engine (pluggy project "tally", entry-point group "tally").

Every hook is called with keyword arguments only. A hookimpl may accept any subset of
a hook's arguments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.orgs import Organization
    from limits.periods import Period
    from limits.resource import Limit, Resource
    from limits.types import Decision, UsageEvent

PROJECT = "tally"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tally_register_resources() -> Iterable[Resource]:  # type: ignore[empty-body]
    """Return the `Resource` definitions this plugin provides.

    A key registered by two plugins is a start-up error that names both.
    """


@hookspec(firstresult=True)
def tally_resolve_limit(organization: Organization, resource: Resource) -> Limit | None:
    """Return the `Limit` in force for this organization and resource, or None to pass.

    Billing answers from the organization's plan (trylast, so a partner's answer wins).
    With no answer at all the resource's `default_limit` applies.
    """


@hookspec(firstresult=True)
def tally_current_usage(
    session: AsyncSession, organization: Organization, resource: Resource, period: Period | None
) -> int | Awaitable[int] | None:
    """Return the current usage of a resource that counts from its own tables.

    Return an int, an awaitable of one (to query through `session`), or None to let
    Tally's counters answer. `period` is None for a gauge.
    """


@hookspec
def tally_validate_usage(
    organization: Organization, resource: Resource, amount: int, attributes: Mapping[str, Any]
) -> None:
    """Raise `UsageRejected` with a clear message when this usage is bad input.

    Called before anything is written; return None when the usage is acceptable.
    """


@hookspec
def tally_usage_recorded(
    organization: Organization, resource: Resource, events: Sequence[UsageEvent]
) -> None:
    """Observe usage after its transaction committed (alerts, projections).

    The return value is ignored; an exception is logged and never undoes the usage.
    """


@hookspec
def tally_threshold_crossed(
    organization: Organization, resource: Resource, threshold: int, usage: Decision
) -> None:
    """Observe a usage threshold (percent of the limit) crossed for the first time this period.

    Fired once per organization, resource, period and threshold, after commit.
    """


@hookspec
def tally_spend_cap_crossed(
    organization: Organization, resource: Resource, threshold: int, usage: Decision
) -> None:
    """Observe a percent of the organization's spend cap (80, then 100) reached by overage.

    Fired once per organization, resource, period and threshold, after commit; the cap is
    counted in units (`Limit.overage_cap`, what the cap pays for past the limit and top-ups).
    """
