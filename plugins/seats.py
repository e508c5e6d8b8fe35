"""Seats: the organization's members, invited ones included (a gauge).

A member takes a seat in the same transaction that adds it, so the seat limit is
decided atomically with the insert.
"""

from __future__ import annotations

from collections.abc import Iterable

from limits import Resource, hookimpl

SEATS = Resource(
    key="seats",
    label="Seats",
    unit="seats",
    kind="gauge",
    attributes=("member_id",),
    description="Team members with access to the organization",
    order=40,
)


@hookimpl
def tally_register_resources() -> Iterable[Resource]:
    return [SEATS]
