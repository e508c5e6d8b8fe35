"""The ceiling of the HTTP benchmarks: a bare Starlette JSON endpoint, no database.

`POST /v1/usage` reads the body and answers a constant result shaped like Tally's;
`GET /healthz` answers ok. Served the way `tally serve --workers 2` serves Tally (uvicorn,
same defaults), so that a benchmark can divide Tally's throughput by this one, in the same run:

    .venv/bin/uvicorn ceiling_app:app --app-dir bench --workers 2 --port 8001
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_ACCEPTED = {
    "results": [
        {
            "idempotency_key": "ceiling",
            "status": "accepted",
            "used": 1,
            "limit": None,
            "remaining": None,
            "error": None,
        }
    ]
}


async def usage(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse(_ACCEPTED)


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/v1/usage", usage, methods=["POST"]), Route("/healthz", healthz)])
