"""`POST /webhooks/stripe`: Stripe's events, verified and handled by billing, each outcome
counted (`tally_webhook_events`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from billing.webhooks import Webhooks
from core.errors import DomainError
from tally.http.metrics import WEBHOOK_EVENTS


def routes(webhooks: Webhooks) -> list[BaseRoute]:
    async def stripe_webhook(request: Request) -> Response:
        try:
            outcome = await webhooks.handle(
                await request.body(), request.headers.get("stripe-signature")
            )
        except DomainError as error:
            WEBHOOK_EVENTS.labels(str(error.code.value).lower()).inc()
            raise
        WEBHOOK_EVENTS.labels(outcome).inc()
        return JSONResponse({"received": True, "outcome": outcome})

    return [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]
