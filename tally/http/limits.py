"""The edge of every route: a request id on each request and answer, bodies capped before
they are read, and a JSON 500 for what nobody expected.

`RequestIds` gives each request an id (the client's `X-Request-Id` when it is a short token,
else a new one), keeps it in the ASGI scope for log lines, echoes it in the answer's
`X-Request-Id`, and answers an exception no handler took (one raised in a middleware) as
the handlers would, or with a JSON 500 logged with that id.

`BodyLimits` refuses a body over its route's cap with a 413: at once when `Content-Length`
says so, otherwise as soon as the bytes received pass the cap, never reading further.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.errors import REQUEST_ID_KEY
from tally.http.errors import answer_unhandled, error_response

log = logging.getLogger(__name__)

KIB = 1024
BODY_CAPS: Mapping[str, int] = {
    "/graphql": 256 * KIB,
    "/v1/": 1024 * KIB,
    "/webhooks/stripe": 512 * KIB,
}
"""The largest body each route accepts, by path prefix (the longest prefix applies)."""
DEFAULT_BODY_CAP = 64 * KIB
"""The largest body of any other route."""

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def body_cap(path: str) -> int:
    """The cap on the body of a request to `path`."""
    prefixes = [prefix for prefix in BODY_CAPS if path.startswith(prefix)]
    return BODY_CAPS[max(prefixes, key=len)] if prefixes else DEFAULT_BODY_CAP


class BodyTooLarge(Exception):
    """The body passed its cap while it was being received."""


class RequestIds:
    """Gives each HTTP request an id, echoes it, and answers unexpected failures with a JSON
    500 (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Request(scope).headers.get(REQUEST_ID_HEADER, "")
        identifier = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = identifier
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), identifier.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if started:
                log.error("request %s: failed after answering", identifier, exc_info=error)
                return
            answer = await answer_unhandled(Request(scope), error)
            await answer(scope, receive, send_with_id)


class BodyLimits:
    """Caps request bodies per route with a 413 (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(scope["path"])
        declared = Request(scope).headers.get("content-length")
        if declared is not None and not declared.isdigit():
            answer = error_response(400, "BAD_REQUEST", "Content-Length must be a number")
            await answer(scope, receive, send)
            return
        if declared is not None and int(declared) > cap:
            await self._too_large(scope, receive, send, cap)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send, cap)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        log.info("request %s: 413 body over %d bytes", scope.get(REQUEST_ID_KEY, "-"), cap)
        answer = error_response(
            413, "BODY_TOO_LARGE", f"the body is over {cap} bytes, the most {scope['path']} takes"
        )
        await answer(scope, receive, send)
