"""The page's files as `tally serve` hands them out (no browser needed): the document with a
same-origin-only policy, every module it imports, and the vendored libraries with licenses."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.anyio

WEB = files("tally").joinpath("web")
PINS = Path(__file__).resolve().parents[2] / "tools" / "web-vendor" / "package.json"


async def test_the_page_is_served_at_the_root_with_a_same_origin_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/web/js/main.js">' in response.text


async def test_every_file_the_page_loads_is_served_from_this_origin(
    client: httpx.AsyncClient,
) -> None:
    html = (await client.get("/")).text
    pending = re.findall(r'(?:src|href)="(/[^"]*)"', html)
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen or not path.startswith("/web/"):
            continue
        seen.add(path)
        response = await client.get(path)
        assert response.status_code == 200, path
        if path.endswith(".js"):
            assert "javascript" in response.headers["content-type"], path
            base = path.rsplit("/", 1)[0]
            for imported in re.findall(r'from\s+["\'](\.{1,2}/[^"\']+)["\']', response.text):
                pending.append(str(httpx.URL(f"http://x{base}/").join(imported).path))
    assert {"/web/js/main.js", "/web/vendor/graphql-ws/client.js"} <= seen
    assert "/web/vendor/uplot/uPlot.esm.js" in seen
    assert not re.search(r"https?://(?!127\.0\.0\.1)", html.replace("http://www.w3.org", ""))


async def test_the_favicon_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")


def test_each_vendored_library_ships_its_license_and_pinned_version() -> None:
    pins = json.loads(PINS.read_text())["dependencies"]
    vendor = WEB.joinpath("vendor")
    libraries = sorted(item.name for item in vendor.iterdir() if item.is_dir())
    assert libraries == sorted(pins)
    for name in libraries:
        names = {item.name for item in vendor.joinpath(name).iterdir()}
        assert names & {"LICENSE", "LICENSE.md"}, name
        assert vendor.joinpath(name, "VERSION").read_text() == f"{pins[name]}\n", name
