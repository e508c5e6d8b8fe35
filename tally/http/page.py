"""The Organization page at `/`: static files shipped in the package (`tally/web/`), a
reference client of the public GraphQL API, with nothing loaded from another origin."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

WEB_PACKAGE = ("tally", "web")

PAGE_HEADERS = {"Cache-Control": "no-cache"}
"""Its Content-Security-Policy (this origin only) and security headers come from
`tally.http.security`, the one place for them."""


def page_html() -> str:
    """The page's HTML document, read from the package data."""
    return files("tally").joinpath("web", "index.html").read_text(encoding="utf-8")


def favicon_svg() -> bytes:
    """Tally's icon, also answered at /favicon.ico (browsers ask for it on every page, the
    invoice pages included)."""
    return files("tally").joinpath("web", "favicon.svg").read_bytes()


def routes() -> list[BaseRoute]:
    """`GET /` (the page), `/favicon.ico` and `/web/...` (the page's stylesheets, modules and
    vendored libraries)."""

    async def page(_: Request) -> Response:
        return HTMLResponse(page_html(), headers=PAGE_HEADERS)

    async def favicon(_: Request) -> Response:
        return Response(
            favicon_svg(),
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [
        Route("/", page, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/web", app=StaticFiles(packages=[WEB_PACKAGE]), name="web"),
    ]
