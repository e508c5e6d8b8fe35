"""The ASGI app: /graphql (GraphiQL on GET), /v1 (usage hot path), /healthz, billing's invoice
links and /webhooks/stripe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL

from core.auth import authenticate, bearer_secret
from core.config import Settings
from graph.context import Loaders, TallyContext
from graph.schema import build_schema
from tally import http
from tally.http.errors import EXCEPTION_HANDLERS
from tally.runtime import Runtime, build_runtime


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

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await runtime.db.dispose()

    graphql = TallyGraphQL(runtime)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *http.routes(runtime),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
