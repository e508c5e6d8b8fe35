"""`GET /exports/organization`: the JSON archive behind a signed, expiring export link
(`exportOrganizationData`), streamed as it is read so that its size never weighs on memory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from billing.gdpr import EXPORT_PATH, GdprService
from tally.runtime import Runtime

NO_STORE = {"Cache-Control": "private, no-store"}


def routes(runtime: Runtime) -> list[BaseRoute]:
    gdpr = GdprService(runtime.db, runtime.clock, runtime.links, runtime.provider)

    async def organization_archive(request: Request) -> Response:
        params = request.query_params
        organization_id = await gdpr.check_link(
            params.get("org"), params.get("expires"), params.get("signature")
        )
        chunks = await gdpr.archive(organization_id)
        filename = f"tally-organization-{organization_id}.json"
        return StreamingResponse(
            chunks,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE},
        )

    return [Route(EXPORT_PATH, organization_archive, methods=["GET"])]
