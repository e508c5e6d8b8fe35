"""`GET /billing/invoices/{id}/{format}`: a signed link opens one organization's invoice,
unaltered and in time, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from core.clock import FrozenClock
from tally.runtime import Runtime
from tests.billing.test_invoicing import APRIL_1, INVOICES, close
from tests.conftest import OpenOrg
from tests.support import graphql

pytestmark = pytest.mark.anyio


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()} | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


async def links_of(client: httpx.AsyncClient, key: str) -> tuple[str, str]:
    body = await graphql(client, key, INVOICES)
    [node] = body["data"]["organization"]["invoices"]["nodes"]
    return node["pdfUrl"], node["hostedUrl"]


async def test_a_link_opens_its_own_invoice_only(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    a, b = await open_org(name="A"), await open_org(name="B")
    clock.set(APRIL_1)
    await close(runtime, a.organization.id)
    await close(runtime, b.organization.id)
    a_pdf, _ = await links_of(client, a.owner_api_key)
    b_pdf, b_html = await links_of(client, b.owner_api_key)
    assert (await client.get(a_pdf)).status_code == 200
    b_invoice = urlsplit(b_pdf).path.split("/")[3]
    a_for_b = a_pdf.replace(urlsplit(a_pdf).path.split("/")[3], b_invoice)
    refused = [
        with_query(a_pdf, org=b.organization.id),
        a_for_b,
        with_query(a_pdf, signature="A" * 43),
        with_query(a_pdf, expires=str(int(APRIL_1.timestamp()) + 10**6)),
        a_pdf.replace("/pdf?", "/html?"),
        a_pdf.split("?")[0],
    ]
    for url in refused:
        response = await client.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "INVALID_LINK"
    clock.advance(timedelta(hours=25))
    expired = await client.get(b_html)
    assert expired.status_code == 403
    assert expired.json() == {
        "error": {
            "code": "LINK_EXPIRED",
            "message": "this invoice link has expired: open the invoice list again",
        }
    }


async def test_a_signed_link_to_an_invoice_that_does_not_exist_is_404(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    url = await runtime.links.url(account.organization.id, "0" * 32, "pdf")
    response = await client.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert (await client.get(url.replace("/pdf?", "/docx?"))).status_code == 404
