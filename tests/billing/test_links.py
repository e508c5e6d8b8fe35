"""Invoice links: one signing key, stored once and shared by every worker."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from billing.links import InvoiceLinks
from core.clock import FrozenClock
from tally.runtime import Runtime

pytestmark = pytest.mark.anyio


async def test_every_worker_shares_the_stored_key(runtime: Runtime) -> None:
    clock = FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
    first, second = InvoiceLinks(runtime.db, clock), InvoiceLinks(runtime.db, clock)
    assert await first.key() == await second.key()
    url = await first.url("org", "invoice", "pdf")
    query = parse_qs(urlsplit(url).query)
    target = await second.check("invoice", "pdf", "org", query["expires"][0], query["signature"][0])
    assert (target.organization_id, target.invoice_id, target.format) == ("org", "invoice", "pdf")
    configured = InvoiceLinks(runtime.db, clock, "k" * 40)
    assert await configured.key() == b"k" * 40 != await first.key()
