"""Files shipped inside the packages (TOML tables, the GraphQL schema, the migrations), found
with importlib.resources: the same from a checkout and from an installed wheel."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any


def packaged(package: str, name: str) -> Traversable:
    """The resource `name` shipped in `package` (e.g. `packaged("billing", "plans.toml")`)."""
    return files(package).joinpath(name)


def packaged_path(package: str, name: str) -> Path:
    """The resource `name` of `package` as a file on disk (a wheel installs unzipped)."""
    resource = packaged(package, name)
    if not isinstance(resource, Path):
        raise RuntimeError(f"{package}/{name} is not a file on disk: {resource}")
    return resource


@dataclass(frozen=True)
class TomlDocument:
    """A parsed TOML file, and how error messages name it (its path)."""

    source: str
    data: dict[str, Any]


def load_toml(
    path: Path | None, default: Traversable, kind: str, error: Callable[[str], Exception]
) -> TomlDocument:
    """The TOML in `path`, or in the packaged `default` when `path` is None. A file that cannot
    be read or is not TOML raises `error(message)`, the message naming it as `kind` ("plans
    file") and its path."""
    source = path or default
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"cannot read {kind} {source}: {problem.strerror}") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{kind} {source} is not valid TOML: {problem}") from None
    return TomlDocument(str(source), data)
