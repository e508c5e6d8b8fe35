"""The ASGI app: /graphql (GraphiQL on GET; subscriptions over graphql-transport-ws on the same
path), /v1 (usage hot path), /healthz, billing's invoice links and /webhooks/stripe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from core.config import Settings
from graph.context import Loaders, TallyContext
from graph.live import KeyWatch, LiveContext, authenticate_connection
from graph.schema import build_schema
from limits.notify import UsageHub
from tally import http
from tally.http.errors import EXCEPTION_HANDLERS
from tally.http.limits import BodyLimits, RequestIds
from tally.http.ratelimit import RateLimits, authenticated
from tally.runtime import Runtime, build_runtime


class TallyGraphQL(GraphQL[TallyContext, None]):
    """Strawberry's ASGI app with Tally's per-request context; a websocket connection gets a
    `LiveContext`, authenticated from its `connection_init` payload."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(
            build_schema(runtime.engine.registry),
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.runtime = runtime
        self.hub = UsageHub(runtime.db, runtime.engine)
        self.keys = KeyWatch(runtime.db)

    async def get_context(self, request: Any, response: Any = None) -> TallyContext:
        if isinstance(request, WebSocket):
            services, loaders = self.runtime, Loaders(self.runtime)
            connection: Any = request
            return LiveContext(connection, None, services, None, loaders, self.hub, self.keys)
        found = await authenticated(request, self.runtime)
        principal = found[0] if found else None
        return TallyContext(request, response, self.runtime, principal, Loaders(self.runtime))

    async def on_ws_connect(self, context: TallyContext) -> UnsetType:
        if not isinstance(context, LiveContext):
            raise TypeError("a websocket connection has a LiveContext")
        await authenticate_connection(context)
        acknowledged: UnsetType = UNSET
        return acknowledged


def create_app(runtime: Runtime | None = None) -> Starlette:
    """The app for `runtime`, or for one built from the environment."""
    runtime = runtime or build_runtime(Settings.from_env())

    graphql = TallyGraphQL(runtime)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await graphql.hub.start()
        try:
            yield
        finally:
            await graphql.hub.stop()
            await runtime.db.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *http.routes(runtime),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestIds),
            Middleware(BodyLimits),
            Middleware(RateLimits, runtime=runtime),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
