"""`GET /healthz`: ok when the database answers (a 503 with Retry-After when not)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.db import Database


def routes(db: Database) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        await db.ping()
        return JSONResponse({"status": "ok"})

    return [Route("/healthz", healthz)]
