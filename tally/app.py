"""The ASGI app: /graphql (GraphiQL on GET), /v1 (usage hot path), /healthz, billing's invoice
links and /webhooks/stripe."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from billing import http as billing_http
from graph.context import Loaders, TallyContext
from graph.schema import build_schema
from tally.auth import authenticate, bearer_secret
from tally.config import Settings
from tally.runtime import Runtime, build_runtime
from tally.usage_api import UsageApi, error_response

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class TallyGraphQL(GraphQL[TallyContext, None]):
    """Strawberry's ASGI app with Tally's per-request context."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(build_schema(runtime.engine.registry), graphql_ide="graphiql")
        self.runtime = runtime

    async def get_context(self, request: Any, response: Any = None) -> TallyContext:
        secret = bearer_secret(request.headers.get("authorization"))
        async with self.runtime.db.read() as session:
            principal = await authenticate(session, secret)
        return TallyContext(request, response, self.runtime, principal, Loaders(self.runtime))


def create_app(runtime: Runtime | None = None) -> Starlette:
    """The app for `runtime`, or for one built from the environment."""
    runtime = runtime or build_runtime(Settings.from_env())

    async def healthz(_: Request) -> Response:
        await runtime.db.ping()
        return JSONResponse({"status": "ok"})

    async def database_away(_: Request, error: Exception) -> Response:
        log.error("database unavailable: %s", error)
        return error_response(
            503,
            "DATABASE_UNAVAILABLE",
            "the database cannot be reached; retry shortly",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await runtime.db.dispose()

    graphql = TallyGraphQL(runtime)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            *UsageApi(runtime).routes(),
            *billing_http.routes(runtime),
        ],
        exception_handlers={DBAPIError: database_away, OSError: database_away},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
