"""Acme's voice minutes: a metered resource, registered through the `tally` entry point."""

from __future__ import annotations

from limits import Resource, hookimpl


@hookimpl
def tally_register_resources() -> list[Resource]:
    return [Resource(key="voice_minutes", label="Voice minutes", unit="minutes", kind="metered")]
