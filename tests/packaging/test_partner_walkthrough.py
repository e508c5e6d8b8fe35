"""The README's partner walk-through, exactly as written: its files are written out, its install
command is run with the pip of a venv holding Tally's wheel, and the installed `tally` lists,
exports and serves the partner's resource.

The README marks what this reads: `<!-- file: PATH -->` before a file's fenced block, and
`<!-- run: NAME -->` before the commands of a step."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.packaging.venvs import venv_env
from tests.support import free_port

pytestmark = pytest.mark.wheel

README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH_FILES = {
    "acme-voice/pyproject.toml",
    "acme-voice/acme_voice/__init__.py",
    "acme-voice/acme_voice/plugin.py",
    "plans.toml",
}
ENV_PREFIX = ".venv/bin/"
README_BASE = "localhost:8000"
SERVE_TIMEOUT = 90.0


def _marked_blocks(kind: str) -> dict[str, str]:
    """The fenced blocks that follow a `<!-- KIND: NAME -->` line, by NAME."""
    pattern = rf"^<!-- {kind}: (\S+) -->\n```[a-z]*\n(.*?)^```$"
    found = re.findall(pattern, README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    blocks = dict(found)
    assert len(blocks) == len(found), f"a `{kind}` name is marked twice in README.md"
    return blocks


def _commands(block: str) -> list[str]:
    """The command lines of a block, without its comment lines."""
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def _in_venv(command: str, venv: Path) -> list[str]:
    """A README command run with `venv`'s copy of the program it names under .venv/bin/."""
    argv = shlex.split(command)
    assert argv[0].startswith(ENV_PREFIX), f"{command!r} does not run from Tally's environment"
    return [str(venv / "bin" / argv[0].removeprefix(ENV_PREFIX)), *argv[1:]]


@dataclass(frozen=True)
class Curl:
    """A README `curl` command, as a request, and the answer the README shows under it."""

    url: str
    headers: dict[str, str]
    body: str
    expected: Any

    @classmethod
    def parse(cls, block: str) -> Curl:
        words = shlex.split(block.replace("\\\n", " "), comments=True)
        assert words[0] == "curl", block
        url, body, headers = "", "", {"Content-Type": "application/x-www-form-urlencoded"}
        rest = iter(words[1:])
        for word in rest:
            if word == "-H":
                name, _, value = next(rest).partition(":")
                headers[name.strip()] = value.strip()
            elif word == "-d":
                body = next(rest)
            elif not word.startswith("-"):
                url = word
        shown = " ".join(
            line.removeprefix("#").strip() for line in block.splitlines() if line.startswith("#")
        )
        return cls(url, headers, body, json.loads(shown))

    def send(self, base: str, keys: dict[str, str]) -> Any:
        assert self.url.startswith(README_BASE), self.url
        headers = dict(self.headers)
        for name, value in keys.items():
            headers = {k: v.replace(f"${name}", value) for k, v in headers.items()}
        response = httpx.post(
            base + self.url.removeprefix(README_BASE),
            headers=headers,
            content=self.body,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


@dataclass(frozen=True)
class Walkthrough:
    """The directory the walk-through ran in, and the venv it installed into."""

    directory: Path
    venv: Path
    runs: dict[str, str]

    def env(self) -> dict[str, str]:
        return venv_env(
            self.venv,
            TALLY_DATABASE_URL=f"sqlite:///{self.directory / 'tally.db'}",
            TALLY_PLANS=str(self.directory / "plans.toml"),
        )

    def tally(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _in_venv(command, self.venv),
            cwd=self.directory,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def walkthrough(
    tally_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Walkthrough]:
    """The README's files written out and its install command run; the partner package is
    uninstalled afterwards, so that `tally_venv` holds Tally alone again."""
    files = _marked_blocks("file")
    assert set(files) == WALKTHROUGH_FILES
    directory = tmp_path_factory.mktemp("walkthrough")
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    runs = _marked_blocks("run")
    (install,) = _commands(runs["install"])
    assert install == ".venv/bin/pip install ./acme-voice"
    installed = subprocess.run(
        _in_venv(install, tally_venv),
        cwd=directory,
        env=venv_env(tally_venv),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        yield Walkthrough(directory, tally_venv, runs)
    finally:
        subprocess.run(
            [str(tally_venv / "bin" / "pip"), "uninstall", "--yes", "--quiet", "acme-voice"],
            env=venv_env(tally_venv),
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_tally_resources_lists_the_partner_resource(walkthrough: Walkthrough) -> None:
    block = walkthrough.runs["serve"]
    commands = _commands(block)
    assert commands == [
        'export TALLY_PLANS="$PWD/plans.toml"',
        ".venv/bin/tally resources",
        ".venv/bin/tally serve --demo",
    ]
    listed = walkthrough.tally(".venv/bin/tally resources")
    assert listed.returncode == 0, listed.stderr
    shown = [line.removeprefix("# ") for line in block.splitlines() if line.startswith("# ")]
    assert listed.stdout.splitlines() == shown


def test_export_schema_checks_the_shipped_file_and_exports_the_partner_field(
    walkthrough: Walkthrough,
) -> None:
    assert _commands(walkthrough.runs["schema"]) == [
        ".venv/bin/tally export-schema --check",
        ".venv/bin/tally export-schema --output my-schema.graphql",
        "grep voiceMinutes my-schema.graphql",
    ]
    checked = walkthrough.tally(".venv/bin/tally export-schema --check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    printed = walkthrough.tally(".venv/bin/tally export-schema --output -")
    assert printed.returncode == 0, printed.stderr
    assert "voiceMinutes: ResourceUsage!" in printed.stdout

    written = walkthrough.tally(".venv/bin/tally export-schema --output my-schema.graphql")
    assert written.returncode == 0, written.stderr
    exported = (walkthrough.directory / "my-schema.graphql").read_text(encoding="utf-8")
    assert exported == printed.stdout


def _demo_keys(log: Path) -> dict[str, str] | None:
    text = log.read_text(encoding="utf-8")
    owner = re.search(r"^  owner key: +(\S+)$", text, re.MULTILINE)
    service = re.search(r"^  service key: +(\S+)$", text, re.MULTILINE)
    if owner is None or service is None:
        return None
    return {"OWNER_KEY": owner.group(1), "SERVICE_KEY": service.group(1)}


def test_the_served_resource_records_usage_and_shows_its_meter(
    walkthrough: Walkthrough,
) -> None:
    port = free_port()
    stdout, stderr = walkthrough.directory / "serve.out", walkthrough.directory / "serve.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        server = subprocess.Popen(
            [*_in_venv(".venv/bin/tally serve --demo", walkthrough.venv), "--port", str(port)],
            cwd=walkthrough.directory,
            env=walkthrough.env(),
            stdout=out,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            assert server.poll() is None, (
                f"tally serve exited:\n{stdout.read_text()}{stderr.read_text()}"
            )
            assert time.monotonic() < deadline, (
                f"tally serve did not answer within {SERVE_TIMEOUT:.0f} s:\n"
                f"{stdout.read_text()}{stderr.read_text()}"
            )
            keys = _demo_keys(stdout)
            if keys is not None:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.25)

        record = Curl.parse(walkthrough.runs["record"])
        assert json.loads(record.body)["events"][0]["call_id"] == "abc"
        assert record.send(base, keys) == record.expected

        query = Curl.parse(walkthrough.runs["query"])
        assert "voiceMinutes { used limit" in json.loads(query.body)["query"]
        assert query.send(base, keys) == query.expected
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
