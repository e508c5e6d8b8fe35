"""Invoice documents behind the signed links the API hands out: a PDF download or an HTML
page. Rendering a PDF is CPU work: it runs in a worker thread, off the event loop."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from billing.links import InvoiceLinks
from billing.local import render_html

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
        from billing.local.pdf import render_pdf  # loads fpdf (~25 MB) on the first PDF only

        pdf = await anyio.to_thread.run_sync(render_pdf, opened.document)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="invoice-{opened.number}.pdf"',
                **NO_STORE,
            },
        )

    return [Route("/billing/invoices/{invoice_id}/{format}", invoice_document, methods=["GET"])]
