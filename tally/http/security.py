"""Browser-facing safety: CORS for frontends on other origins, and security headers on every
answer.

`cors` answers preflights and marks answers for the origins in TALLY_CORS_ORIGINS (none by
default, `*` for any). Credentials are never allowed: the API is called with an
`Authorization: Bearer <key>` header, never cookies, so no origin (a wildcard least of all)
gets `Access-Control-Allow-Credentials`.

`SecurityHeaders` adds `X-Content-Type-Options`, `Referrer-Policy` and `X-Frame-Options` to
every HTTP answer, and to every HTML answer but GraphiQL (which loads its scripts from a CDN)
the one strict Content-Security-Policy: this origin only, plus the hashes of the inline
`<style>` blocks the server itself wrote (an invoice's HTML view carries its CSS inline).
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-Id")
EXPOSED_HEADERS = ("X-Request-Id", "Retry-After")
PREFLIGHT_MAX_AGE = 600

CONTENT_SECURITY_POLICY = (
    "default-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "style-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
"""Only this origin: the page works offline and a fragment's key cannot leak to a third party."""
FRAME_ONLY_POLICY = "frame-ancestors 'none'"
"""The policy of GraphiQL's page, which loads its scripts from a CDN: never framed."""
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
_INLINE_STYLE = re.compile(rb"<style>(.*?)</style>", re.DOTALL)
GRAPHIQL_PATH = "/graphql"


def cors(origins: tuple[str, ...]) -> Middleware:
    """Starlette's CORS middleware for `origins`, never with credentials."""
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE,
    )


def content_security_policy(html: bytes) -> str:
    """The strict policy for an HTML document, allowing exactly its own inline styles."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(style).digest()).decode() + "'"
        for style in _INLINE_STYLE.findall(html)
    ]
    directives = [
        " ".join([directive, *hashes]) if directive == "style-src 'self'" else directive
        for directive in CONTENT_SECURITY_POLICY
    ]
    return "; ".join(directives)


class SecurityHeaders:
    """Adds the security headers to every HTTP answer (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def send_with_headers(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                headers = _with_security_headers(message.get("headers", []))
                message = {**message, "headers": headers}
                if not _is_html(headers):
                    await send(message)
                    return
                if scope["path"] == GRAPHIQL_PATH:
                    await send(_with_policy(message, FRAME_ONLY_POLICY))
                    return
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            await send(_with_policy(held, content_security_policy(body)))
            held = None
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_with_headers)


def _with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    added = [
        (name.encode(), value.encode())
        for name, value in SECURITY_HEADERS.items()
        if name.encode() not in present
    ]
    return [*headers, *added]


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/html")
        for name, value in headers
    )


def _with_policy(message: Message, policy: str) -> Message:
    headers = [
        (name, value)
        for name, value in message["headers"]
        if name.lower() != b"content-security-policy"
    ]
    headers.append((b"content-security-policy", policy.encode()))
    return {**message, "headers": headers}
