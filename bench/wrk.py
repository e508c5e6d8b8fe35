"""wrk for the HTTP benchmarks: installed from Debian's packages when missing, run with a Lua
script from bench/, and its report parsed (throughput, latency percentiles, errors, and the
`lua: name=N ...` counters and `lua note: ...` lines the scripts print when done)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness import BENCH, BenchFailure, say


def ensure_wrk() -> str:
    """The wrk binary, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: apt-get install -y wrk")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, check=False)
        subprocess.run(install, capture_output=True, timeout=600, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchFailure("wrk could not be installed")
    return found


@dataclass
class WrkResult:
    """What one wrk run reports (latencies in ms) and the counters its Lua script printed."""

    requests_per_s: float
    seconds: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    lua: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _find(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise BenchFailure(f"no {pattern!r} in the output:\n{text}")
    return found


def _ms(text: str) -> float:
    found = _find(r"([\d.]+)(us|ms|s|m)$", text)
    return float(found.group(1)) * _UNITS[found.group(2)]


def wrk_arguments(doc: str | None, *, connections: int) -> argparse.ArgumentParser:
    """The options every wrk benchmark takes: --runs, --seconds, --threads, --connections."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk -d per run (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument(
        "--connections", type=int, default=connections, help=f"wrk -c (default {connections})"
    )
    return parser


def run_wrk(
    url: str, script: str, args: Sequence[str], *, threads: int, connections: int, seconds: int
) -> WrkResult:
    """One wrk run with a Lua script from bench/ (script arguments after `--`)."""
    command = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / script),
        url,
        "--",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    if done.returncode != 0:
        raise BenchFailure(f"wrk failed ({done.returncode}): {done.stderr}\n{out}")
    total = _find(r"(\d+) requests in ([\d.]+\w+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lua = " ".join(re.findall(r"^lua: (.*)$", out, re.MULTILINE))
    return WrkResult(
        requests_per_s=float(_find(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        seconds=_ms(total.group(2)) / 1000,
        requests=int(total.group(1)),
        p50_ms=_ms(_find(r"^\s+50%\s+(\S+)", out).group(1)),
        p99_ms=_ms(_find(r"^\s+99%\s+(\S+)", out).group(1)),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
        lua={key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", lua)},
        notes=re.findall(r"^lua note: (.*)$", out, re.MULTILINE),
    )
