"""Billing's HTTP routes: invoice documents behind signed links, and Stripe's webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from billing import repository
from billing.invoicing import stored_document
from billing.links import LinkRefused
from billing.local import render_html, render_pdf
from billing.webhooks import WebhookRejected

if TYPE_CHECKING:
    from tally.runtime import Runtime


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def routes(runtime: Runtime) -> list[BaseRoute]:
    """The routes to mount in Tally's app."""

    async def invoice_document(request: Request) -> Response:
        invoice_id = request.path_params["invoice_id"]
        params = request.query_params
        try:
            target = await runtime.links.check(
                invoice_id,
                request.path_params["format"],
                params.get("org"),
                params.get("expires"),
                params.get("signature"),
            )
        except LinkRefused as refused:
            return error(refused.status, refused.code, refused.message)
        async with runtime.db.read() as session:
            invoice = await repository.get_invoice(session, target.organization_id, invoice_id)
        if invoice is None or invoice.document is None:
            return error(404, "NOT_FOUND", "no such invoice")
        document = stored_document(invoice)
        if target.format == "html":
            return HTMLResponse(
                render_html(document), headers={"Cache-Control": "private, no-store"}
            )
        return Response(
            render_pdf(document),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="invoice-{invoice.number}.pdf"',
                "Cache-Control": "private, no-store",
            },
        )

    async def stripe_webhook(request: Request) -> Response:
        payload = await request.body()
        try:
            outcome = await runtime.webhooks.handle(
                payload, request.headers.get("stripe-signature")
            )
        except WebhookRejected as rejected:
            return error(rejected.status, rejected.code, rejected.message)
        return JSONResponse({"received": True, "outcome": outcome})

    return [
        Route("/billing/invoices/{invoice_id}/{format}", invoice_document, methods=["GET"]),
        Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
    ]
