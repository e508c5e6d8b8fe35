"""The wheel, built from this checkout and installed with its dependencies into a fresh venv.

Session-scoped: the build and the install (20 s to a minute, from the pip cache or PyPI) happen
once per run, for every test that needs the installed `tally`; a test may pip-install more into
`tally_venv` (a partner's plugin, say)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.packaging.venvs import quiet

# Local state that a clean checkout does not have, and what a wheel does not need.
NOT_SOURCES_AT_TOP = {".git", ".venv", "build", "dist", "tests", "bench"}
NOT_SOURCES_ANYWHERE = shutil.ignore_patterns(
    "__pycache__", "*.egg-info", ".*_cache", "*.db", "*.db-wal", "*.db-shm"
)


def _copy_sources(root: Path, target: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(NOT_SOURCES_ANYWHERE(directory, names))
        return skipped | (NOT_SOURCES_AT_TOP & set(names) if Path(directory) == root else set())

    shutil.copytree(root, target, symlinks=True, ignore=ignore)


@pytest.fixture(scope="session")
def tally_wheel(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy of its sources (so that no stale build/
    of the checkout ends up in it)."""
    work = tmp_path_factory.mktemp("wheel")
    _copy_sources(pytestconfig.rootpath, work / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    quiet([*pip, "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(work / "source")])
    (wheel,) = (work / "dist").glob("tally-*.whl")
    return wheel


@pytest.fixture(scope="session")
def tally_venv(tally_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with Tally's wheel installed (not editable) with its dependencies; its
    `bin/tally` is the installed command. Run commands in it with `venvs.venv_env(venv)`."""
    venv = tmp_path_factory.mktemp("venv") / "tally"
    quiet([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    quiet([*pip, "install", str(tally_wheel)])
    return venv
