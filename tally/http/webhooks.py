"""`POST /webhooks/stripe`: Stripe's events, verified and handled by billing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from billing.webhooks import Webhooks


def routes(webhooks: Webhooks) -> list[BaseRoute]:
    async def stripe_webhook(request: Request) -> Response:
        outcome = await webhooks.handle(
            await request.body(), request.headers.get("stripe-signature")
        )
        return JSONResponse({"received": True, "outcome": outcome})

    return [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]
