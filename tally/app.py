"""The ASGI app: /graphql (GraphiQL on GET unless TALLY_GRAPHIQL=0; subscriptions over
graphql-transport-ws on the same path), /v1 (usage hot path), /healthz, /metrics, billing's
invoice links and /webhooks/stripe; security headers, CORS, request ids, JSON access lines and
request metrics at the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import AddValidationRules
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from core.config import Settings
from graph.context import Loaders, TallyContext
from graph.live import KeyWatch, LiveContext, authenticate_connection
from graph.schema import build_schema
from limits.notify import UsageHub
from limits.retention import keep_maintaining
from tally import http
from tally.http import metrics, security
from tally.http.errors import EXCEPTION_HANDLERS
from tally.http.limits import BodyLimits, RequestIds
from tally.http.ratelimit import RateLimits, authenticated
from tally.logging import RequestLogContext
from tally.runtime import Runtime, build_runtime


def no_introspection() -> AddValidationRules:
    """Refuses `__schema` and `__type` (TALLY_GRAPHIQL=0)."""
    return AddValidationRules([NoSchemaIntrospectionCustomRule])


class TallyGraphQL(GraphQL[TallyContext, None]):
    """Strawberry's ASGI app with Tally's per-request context; a websocket connection gets a
    `LiveContext`, authenticated from its `connection_init` payload."""

    def __init__(self, runtime: Runtime) -> None:
        schema = build_schema(runtime.engine.registry)
        if not runtime.settings.graphiql:
            schema.extensions = (*schema.extensions, no_introspection)
        super().__init__(
            schema,
            graphql_ide="graphiql" if runtime.settings.graphiql else None,
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
        if found is None:
            return TallyContext(request, response, self.runtime, None, Loaders(self.runtime))
        principal, organization = found
        loaders = Loaders(self.runtime, caller_organization=organization)
        return TallyContext(request, response, self.runtime, principal, loaders)

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
        retention = timedelta(days=runtime.settings.event_retention_days)
        pruning = asyncio.create_task(
            keep_maintaining(runtime.db, runtime.clock.now, retention), name="event retention"
        )
        try:
            yield
        finally:
            pruning.cancel()
            with suppress(asyncio.CancelledError):
                await pruning
            await graphql.hub.stop()
            await runtime.db.dispose()
            metrics.process_exited()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *http.routes(runtime),
            *metrics.routes(runtime.db),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(security.SecurityHeaders),
            Middleware(RequestIds),
            Middleware(RequestLogContext),
            Middleware(metrics.RequestObserver, db=runtime.db),
            security.cors(runtime.settings.cors_origins),
            Middleware(BodyLimits),
            Middleware(RateLimits, runtime=runtime),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
