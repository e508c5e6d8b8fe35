"""The composition root: settings, database, clock, plans and the limit engine in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from billing import Catalog, PlanLimits
from limits import LimitEngine, create_plugin_manager
from limits.pricing import PriceTable
from tally.clock import Clock, SystemClock
from tally.config import Settings
from tally.db import Database


@dataclass
class Runtime:
    """Everything a request or a command needs, built once per process."""

    settings: Settings
    db: Database
    clock: Clock
    catalog: Catalog
    engine: LimitEngine


def build_runtime(
    settings: Settings, clock: Clock | None = None, plugins: Iterable[tuple[object, str]] = ()
) -> Runtime:
    """Load plugins and plans and check that they agree; fails fast with a clear error.

    `plugins` are (plugin, name) pairs registered beside the installed ones (embedding, tests).
    """
    catalog = Catalog.load(settings.plans_path)
    manager = create_plugin_manager([(PlanLimits(catalog), "billing"), *plugins])
    clock = clock or SystemClock()
    engine = LimitEngine(
        manager,
        clock,
        PriceTable.load(settings.model_prices_path),
        timedelta(seconds=settings.usage_grace_seconds),
    )
    catalog.check_resources(resource.key for resource in engine.registry)
    return Runtime(settings, Database(settings.database_url), clock, catalog, engine)
