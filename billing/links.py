"""Signed, expiring links to invoices: a link names one organization's invoice and opens
nothing else; any worker can check it, as they share the key. Links are absolute, on
TALLY_PUBLIC_URL (never the Host header of the request that asked for them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlencode

from billing import ledger_repository, repository
from billing.invoicing import stored_document
from billing.local import InvoiceDocument
from core.clock import Clock
from core.config import DEFAULT_PUBLIC_URL
from core.db import Database
from core.errors import ErrorCode, NotFound, Refused
from core.ids import new_secret

Format = Literal["pdf", "html"]
LINK_TTL = timedelta(hours=24)
KEY_NAME = "invoice-links"
PATH = "/billing/invoices"


@dataclass(frozen=True)
class LinkTarget:
    """What a valid link opens."""

    organization_id: str
    invoice_id: str
    format: Format


@dataclass(frozen=True)
class OpenedDocument:
    """The invoice document a valid link opens."""

    format: Format
    number: str
    document: InvoiceDocument


class InvoiceLinks:
    """Makes and checks invoice links. The key is TALLY_SECRET_KEY, or else one generated
    once and kept in the database, loaded on first use."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        secret_key: str | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self.db = db
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self._key = secret_key.encode() if secret_key else None

    async def key(self) -> bytes:
        if self._key is None:
            async with self.db.write() as session:
                stored = await ledger_repository.signing_key(
                    session, KEY_NAME, new_secret(48), self.clock.now()
                )
            self._key = stored.encode()
        return self._key

    async def url(self, organization_id: str, invoice_id: str, fmt: Format) -> str:
        """An absolute link on the public URL, valid for LINK_TTL."""
        expires = int((self.clock.now() + LINK_TTL).timestamp())
        signature = await self.signature("invoice", organization_id, invoice_id, fmt, expires)
        query = urlencode({"org": organization_id, "expires": expires, "signature": signature})
        return f"{self.public_url}{PATH}/{invoice_id}/{fmt}?{query}"

    async def check(
        self, invoice_id: str, fmt: str, org: str | None, expires: str | None, signature: str | None
    ) -> LinkTarget:
        if fmt not in ("pdf", "html"):
            raise NotFound.of("invoice document")
        kind: Format = "pdf" if fmt == "pdf" else "html"
        await self.verify(
            "invoice",
            "invoice",
            org,
            invoice_id,
            kind,
            expires=expires,
            signature=signature,
            renew="open the invoice list again",
        )
        assert org is not None
        return LinkTarget(org, invoice_id, kind)

    async def verify(
        self,
        what: str,
        subject: str,
        *parts: str | None,
        expires: str | None,
        signature: str | None,
        renew: str,
    ) -> None:
        """Accept a signed link: Refused with INVALID_LINK unless `signature` is `subject`'s
        signature over `parts` and `expires`, with LINK_EXPIRED once `expires` has passed
        (`renew` says how to get a fresh link); `what` names the link in the messages."""
        if not all(parts) or not expires or not signature or not expires.isdigit():
            raise Refused(ErrorCode.INVALID_LINK, f"this {what} link is incomplete")
        expected = await self.signature(subject, *(str(part) for part in parts), int(expires))
        if not hmac.compare_digest(expected, signature):
            raise Refused(ErrorCode.INVALID_LINK, f"this {what} link is not valid")
        if int(expires) < self.clock.now().timestamp():
            raise Refused(ErrorCode.LINK_EXPIRED, f"this {what} link has expired: {renew}")

    async def open(
        self, invoice_id: str, fmt: str, org: str | None, expires: str | None, signature: str | None
    ) -> OpenedDocument:
        """The document a link opens, once `check` accepts it; NotFound when the invoice has
        none (a provider's invoice) or is not the organization's."""
        target = await self.check(invoice_id, fmt, org, expires, signature)
        async with self.db.read() as session:
            invoice = await repository.get_invoice(session, target.organization_id, invoice_id)
        if invoice is None or invoice.document is None:
            raise NotFound.of("invoice")
        return OpenedDocument(target.format, invoice.number, stored_document(invoice))

    async def signature(self, subject: str, *parts: str | int) -> str:
        """The HMAC-SHA256 of `subject` and `parts` under the shared signing key, URL-safe and
        unpadded: every signed link of Tally (invoices, data exports) is signed with it, each
        under its own subject so that no link can be passed off as another kind."""
        message = "|".join([subject, *map(str, parts)]).encode()
        digest = hmac.new(await self.key(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
