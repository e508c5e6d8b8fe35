"""Running commands quietly, and from a venv other than the one running the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def quiet(command: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    """Run `command`, silent on success; on failure, fail the test with its output."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")


def venv_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run from `venv`: its bin first, no TALLY_* setting and
    nothing of the checkout or of the test venv on the import path; then `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not key.startswith("TALLY_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return {**env, **extra}
