"""The plugin manager: built-in and installed plugins, and the resources they register."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

import pluggy

from limits import hookspecs
from limits.resource import Resource


class PluginError(RuntimeError):
    """A plugin is broken: a bad hookimpl, a duplicate resource key, a bad definition."""


def create_plugin_manager(
    plugins: Iterable[tuple[object, str]] = (), *, load_entry_points: bool = True
) -> pluggy.PluginManager:
    """A manager with Tally's hookspecs, the given (plugin, name) pairs registered first,
    then every plugin installed under the entry-point group "tally"."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    try:
        for plugin, name in plugins:
            manager.register(plugin, name=name)
        if load_entry_points:
            manager.load_setuptools_entrypoints(hookspecs.PROJECT)
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(str(error)) from error
    return manager


class ResourceRegistry:
    """Every registered resource by key, in registration order."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self._resources: dict[str, Resource] = {}
        self._owners: dict[str, str] = {}
        for impl in manager.hook.tally_register_resources.get_hookimpls():
            owner = impl.plugin_name
            registered = cast(Iterable[object], impl.function() or ())
            for resource in registered:
                if not isinstance(resource, Resource):
                    raise PluginError(f"plugin {owner!r} registered {resource!r}, not a Resource")
                if resource.key in self._resources:
                    raise PluginError(
                        f"resource {resource.key!r} is registered twice: by plugin "
                        f"{self._owners[resource.key]!r} and by plugin {owner!r}"
                    )
                self._resources[resource.key] = resource
                self._owners[resource.key] = owner
        ordered = sorted(self._resources.values(), key=lambda resource: resource.order)
        self._resources = {resource.key: resource for resource in ordered}

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._resources.values())

    def __len__(self) -> int:
        return len(self._resources)

    def __contains__(self, key: object) -> bool:
        return key in self._resources

    def get(self, key: str) -> Resource | None:
        return self._resources.get(key)

    def owner(self, key: str) -> str:
        return self._owners[key]
