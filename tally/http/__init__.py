"""Tally's HTTP routes besides /graphql, one module per group, and their one way of failing."""

from __future__ import annotations

from starlette.routing import BaseRoute

from tally.http import exports, health, invoices, page, usage, webhooks
from tally.runtime import Runtime


def routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route to mount beside /graphql."""
    return [
        *health.routes(runtime.db),
        *usage.UsageApi(runtime).routes(),
        *invoices.routes(runtime.links),
        *exports.routes(runtime),
        *webhooks.routes(runtime.webhooks),
        *page.routes(),
    ]
