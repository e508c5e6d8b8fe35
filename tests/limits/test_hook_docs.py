"""Every hook has its own test and its entry in docs/plugin_hooks.md (as datasette checks)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pluggy
import pytest

from billing import Catalog, PlanLimits
from limits import create_plugin_manager, hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugin_hooks.md"
TESTS = ROOT / "tests"
BUILT_IN_MODULES = ("plugins.", "billing.")

_spec_manager = pluggy.PluginManager(hookspecs.PROJECT)
_spec_manager.add_hookspecs(hookspecs)
HOOKS = sorted(name for name in dir(_spec_manager.hook) if name.startswith("tally_"))


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names.update(
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        )
    return names


def _sections() -> dict[str, str]:
    """The text under each `## heading` of the reference, by heading."""
    parts = re.split(r"^## (.+)$", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def _field(section: str, name: str) -> str:
    """The paragraph that starts with `**name:**`."""
    match = re.search(rf"^\*\*{name}:\*\*(.+?)(?:\n\n|\Z)", section, re.MULTILINE | re.DOTALL)
    assert match, f"no **{name}:** paragraph"
    return " ".join(match.group(1).split())


def _signature(hook: str) -> str:
    spec = getattr(_spec_manager.hook, hook).spec
    assert spec is not None
    return f"{hook}({', '.join(spec.argnames)})"


def _built_in_hookimpls(hook: str) -> list[pluggy.HookImpl]:
    manager = create_plugin_manager([(PlanLimits(Catalog.load()), "billing")])
    return [
        impl
        for impl in getattr(manager.hook, hook).get_hookimpls()
        if getattr(impl.plugin, "__name__", type(impl.plugin).__module__).startswith(
            BUILT_IN_MODULES
        )
    ]


def test_every_hookspec_is_found() -> None:
    assert len(HOOKS) == 8, HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook: str) -> None:
    assert f"test_hook_{hook}" in _test_function_names(), (
        f"hook {hook} has no test named test_hook_{hook} under tests/"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook: str) -> None:
    sections = _sections()
    signature = _signature(hook)
    assert signature in sections, f"docs/plugin_hooks.md has no heading `## {signature}`"
    section = sections[signature]
    spec = getattr(_spec_manager.hook, hook).spec
    assert spec is not None
    for argument in spec.argnames:
        assert f"- `{argument}` (" in section, f"{hook}: argument {argument} is not described"
    if not spec.argnames:
        assert _field(section, "Arguments") == "none."
    assert len(_field(section, "Returns")) > 20, f"{hook}: the return is not described"
    firstresult = _field(section, "firstresult")
    expected = "yes" if spec.opts.get("firstresult") else "no"
    assert firstresult.startswith(expected + ":"), f"{hook}: firstresult should say {expected}"
    assert "```python" in section and "@hookimpl" in section, f"{hook}: no example"


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_document_their_built_in_implementations(hook: str) -> None:
    built_in = _field(_sections()[_signature(hook)], "Built-in implementations")
    impls = _built_in_hookimpls(hook)
    if not impls:
        assert built_in.startswith("none"), f"{hook}: no built-in implementation, docs say some"
    for impl in impls:
        name = f"`{impl.plugin_name}`"
        assert name in built_in, f"{hook}: built-in {name} is not documented"
        assert (f"{name} (`trylast`)" in built_in) == impl.trylast, (
            f"{hook}: whether {name} is trylast is documented wrong"
        )
