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
    from limits.types import Decision, PreparedEvent, UsageEvent

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
def tally_display_usage(
    session: AsyncSession, organization: Organization, resource: Resource, period: Period | None
) -> int | Awaitable[int] | None:
    """Return the count a resource's meter shows, counted from the plugin's own tables.

    Display only: the meter's `used`, `remaining`, `percent` and `display` show it, while
    decisions (consume, check, reserve), alerts, plan-change blockers and bills count Tally's
    counter, exact under its row lock. Return an int, an awaitable of one (to query through
    `session`), or None to show Tally's counter. `period` is None for a gauge.
    """


@hookspec
def tally_validate_usage(
    organization: Organization, resource: Resource, amount: int, attributes: Mapping[str, Any]
) -> None:
    """Raise `UsageRejected` with a clear message when this usage is bad input.

    Called before anything is written, once per event, and only when some plugin implements
    it; return None when the usage is acceptable. `tally_validate_batch` checks a whole batch
    of a resource in one call.
    """


@hookspec
def tally_validate_batch(
    organization: Organization, resource: Resource, events: Sequence[PreparedEvent]
) -> None:
    """Raise `UsageRejected(code, message, index)` when one of these events is bad input,
    `index` being its position in `events` (the first bad one).

    Called once per resource of each batch (a single event is a batch of one), before
    anything is written, with that resource's events in order, already checked as for
    `tally_validate_usage`; return None when they are all acceptable.
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
    """Observe a usage threshold (percent of the limit) reached from below by an event.

    Fired after commit, once per organization, resource, period and threshold for a metered
    resource; for a gauge, at each crossing (again after its count fell back below). `usage`
    is the decision of the event that crossed it.
    """


@hookspec
def tally_spend_cap_crossed(
    organization: Organization, resource: Resource, threshold: int, usage: Decision
) -> None:
    """Observe a percent of the organization's spend cap (80, then 100) reached by overage.

    Fired once per organization, resource, period and threshold, after commit; the cap is
    counted in units (`Limit.overage_cap`, what the cap pays for past the limit and top-ups).
    """
