"""Invoice documents behind the signed links the API hands out: a PDF download or an HTML
page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from billing.links import InvoiceLinks
from billing.local import render_html, render_pdf

NO_STORE = {"Cache-Control": "private, no-store"}


def routes(links: InvoiceLinks) -> list[BaseRoute]:
    async def invoice_document(request: Request) -> Response:
        params = request.query_params
        opened = await links.open(
            request.path_params["invoice_id"],
            request.path_params["format"],
            params.get("org"),
            params.get("expires"),
            params.get("signature"),
        )
        if opened.format == "html":
            return HTMLResponse(render_html(opened.document), headers=NO_STORE)
        return Response(
            render_pdf(opened.document),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="invoice-{opened.number}.pdf"',
                **NO_STORE,
            },
        )

    return [Route("/billing/invoices/{invoice_id}/{format}", invoice_document, methods=["GET"])]
