"""GDPR: the export of everything Tally holds about an organization, and its erasure.

The export hands out a signed link valid for EXPORT_TTL (signed like invoice links, with the
same key); the archive is written when the link is opened, as a stream of JSON read page by
page, so an organization with millions of usage events is never held in memory at once.

The erasure replaces members' names and emails with placeholders, clears the contact settings
(billing email, address lines, a person's legal name), usage events' attributes and the
members' emails the audit log kept, revokes every key and closes the account (subscription
canceled, metered usage refused from now on), while the invoices and their stored documents
stay as issued, as the law requires.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from billing import dunning, gdpr_repository, ledger_repository, repository
from billing.links import InvoiceLinks
from billing.models import Subscription
from billing.provider import BillingProvider
from core import audit
from core.audit.log import jsonable
from core.clock import Clock
from core.db import Database
from core.errors import ErrorCode, InvalidInput, NotFound
from core.orgs import Organization
from core.orgs import repository as orgs_repository
from limits.models import UsageEventRow

EXPORT_TTL = timedelta(hours=24)
EXPORT_PATH = "/exports/organization"
EXPORT_FORMAT = "tally-organization-export/1"
PAGE_SIZE = 500
ERASED = "erased"
ERASED_EMAIL_DOMAIN = "erased.invalid"
PERSONAL_KEYS = frozenset(
    {"email", "name", "member_email", "legal_name", "billing_email", "address_line1",
     "address_line2"}
)  # fmt: skip
CONTACT_FIELDS = ("billing_email", "address_line1", "address_line2")


@dataclass(frozen=True)
class ExportLink:
    """A link to an organization's archive: its path and query, and when it stops working."""

    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Erasure:
    """What `delete_organization` did."""

    organization: Organization
    members_erased: int
    keys_revoked: int
    events_cleared: int


def row_data(row: SQLModel, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """A table row as JSON-ready data, without the columns named in `exclude`."""
    data: dict[str, Any] = jsonable(row.model_dump(exclude=set(exclude)))
    return data


def event_data(event: UsageEventRow, organization_id: str) -> dict[str, Any]:
    """A usage event as the archive gives it: its organization's id, its attributes whole (the
    row keeps `model` and `action` in their columns only), none of the storage's keys."""
    data = row_data(event, exclude={"organization_ref", "epoch", "attributes"})
    return {"organization_id": organization_id, **data, "attributes": event.all_attributes()}


def redact(value: Any) -> Any:
    """`value` with every personal field (emails, names, contact lines) replaced by
    ERASED, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: (ERASED if key in PERSONAL_KEYS and item is not None else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class GdprService:
    """Exports and erases an organization's data (owner only, checked by the callers)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        links: InvoiceLinks,
        provider: BillingProvider | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.links = links
        self.provider = provider

    async def export_link(self, organization_id: str) -> ExportLink:
        """A signed link to the organization's archive, valid for EXPORT_TTL; audited."""
        now = self.clock.now()
        expires_at = now + EXPORT_TTL
        expires = int(expires_at.timestamp())
        signature = await self.links.signature("export", organization_id, expires)
        async with self.db.write() as session:
            await audit.record(
                session,
                organization_id,
                "organization.exported",
                at=now,
                after={"expires_at": expires_at},
            )
        query = urlencode({"org": organization_id, "expires": expires, "signature": signature})
        return ExportLink(f"{self.links.public_url}{EXPORT_PATH}?{query}", expires_at)

    async def check_link(
        self, organization_id: str | None, expires: str | None, signature: str | None
    ) -> str:
        """The organization a link opens; Refused when it is incomplete, tampered with or
        expired."""
        await self.links.verify(
            "export",
            "export",
            organization_id,
            expires=expires,
            signature=signature,
            renew="ask for a new export (exportOrganizationData)",
        )
        assert organization_id is not None
        return organization_id

    async def archive(self, organization_id: str) -> AsyncIterator[bytes]:
        """The organization's archive as JSON, in chunks; NotFound when it does not exist
        (checked before the first chunk)."""
        async with self.db.read() as session:
            organization = await orgs_repository.get_organization(session, organization_id)
        if organization is None:
            raise NotFound.of("organization")
        return self._archive(organization)

    async def _archive(self, organization: Organization) -> AsyncIterator[bytes]:
        organization_id = organization.id
        header = {
            "format": EXPORT_FORMAT,
            "exported_at": self.clock.now(),
            "organization": row_data(organization),
        }
        yield _encode(header)[:-1].encode()
        async with self.db.read() as session:
            members = await orgs_repository.list_members(session, organization_id)
            keys = await orgs_repository.list_api_keys(session, organization_id)
            settings = await ledger_repository.get_settings(session, organization_id)
            subscription = await repository.get_subscription(session, organization_id)
            history = await gdpr_repository.plan_history(session, organization_id)
            changes = await gdpr_repository.plan_changes(session, organization_id)
            topups = await gdpr_repository.topup_purchases(session, organization_id)
        small = {
            "members": [row_data(row) for row in members],
            "api_keys": [row_data(row, exclude={"secret_hash"}) for row in keys],
            "settings": row_data(settings) if settings else None,
            "subscription": row_data(subscription) if subscription else None,
            "plan_history": [row_data(row) for row in history],
            "plan_changes": [row_data(row) for row in changes],
            "topups": [row_data(row) for row in topups],
        }
        for name, value in small.items():
            yield f", {json.dumps(name)}: {_encode(value)}".encode()
        yield b', "invoices": ['
        invoices = self._paged(
            lambda session, after: repository.list_invoices(
                session, organization_id, PAGE_SIZE, after
            ),
            lambda row: (row.issued_on, row.id),
        )
        async for chunk in _items(invoices):
            yield chunk
        yield b'], "audit_log": ['
        entries = self._paged(
            lambda session, after: gdpr_repository.audit_entries_page(
                session, organization_id, after, PAGE_SIZE
            ),
            lambda row: row.id,
        )
        async for chunk in _items(entries):
            yield chunk
        yield b'], "usage_events": ['
        events = self._paged(
            lambda session, after: gdpr_repository.usage_events_page(
                session, organization_id, after, PAGE_SIZE
            ),
            lambda row: row.idempotency_key,
            lambda row: event_data(row, organization_id),
        )
        async for chunk in _items(events):
            yield chunk
        yield b"]}\n"

    async def _paged(
        self,
        fetch: Callable[[AsyncSession, Any], Awaitable[Sequence[Any]]],
        cursor: Callable[[Any], Any],
        data: Callable[[Any], dict[str, Any]] = row_data,
    ) -> AsyncIterator[dict[str, Any]]:
        """Rows `fetch(session, after)` gives PAGE_SIZE at a time (as `data` of each), each
        page in its own short read, `after` being `cursor` of the last row of the page
        before."""
        after: Any = None
        while True:
            async with self.db.read() as session:
                rows = await fetch(session, after)
            for row in rows:
                yield data(row)
            if len(rows) < PAGE_SIZE:
                return
            after = cursor(rows[-1])

    async def delete_organization(self, organization_id: str, confirm: str) -> Erasure:
        """Erase the organization's personal data and close its account, in one transaction
        with its audit entry; `confirm` must be the organization's name."""
        now = self.clock.now()
        async with self.db.read() as session:
            found = await orgs_repository.get_organization(session, organization_id)
            subscription = await repository.get_subscription(session, organization_id)
        if found is None:
            raise NotFound.of("organization")
        if confirm != found.name:
            raise InvalidInput(
                ErrorCode.INVALID_INPUT,
                "confirm must be the organization's name, exactly as written, to delete it",
                field="confirm",
            )
        if self.provider is not None and subscription is not None and _renews(subscription):
            key = f"tally-gdpr-delete-{organization_id}"
            await self.provider.set_cancel_at_period_end(subscription, True, key)
        async with self.db.write() as session:
            organization = await repository.lock_organization(session, organization_id)
            if organization is None:
                raise NotFound.of("organization")
            await audit.record(session, organization_id, "organization.deleted", at=now)
            members = await orgs_repository.list_members(session, organization_id)
            for member in members:
                member.email = f"{ERASED}-{member.id}@{ERASED_EMAIL_DOMAIN}"
                member.name = ""
            await orgs_repository.add(session, *members)
            settings = await ledger_repository.get_settings(session, organization_id)
            if settings is not None:
                for name in CONTACT_FIELDS:
                    setattr(settings, name, None)
                if settings.vat_id is None:
                    settings.legal_name = None
                settings.updated_at = now
                await repository.add(session, settings)
            keys = await gdpr_repository.revoke_all_keys(session, organization_id, now)
            events = await gdpr_repository.clear_event_attributes(session, organization_id)
            locked = await repository.lock_subscription(session, organization_id)
            if locked is not None:
                dunning.set_status(organization, locked, "canceled", now, dunning.DEFAULT_GRACE)
                await repository.add(session, locked)
            organization.usage_suspended_from = min(organization.usage_suspended_from or now, now)
            await repository.add(session, organization)
            await self._redact_audit_log(session, organization_id)
        return Erasure(organization, len(members), keys, events)

    @staticmethod
    async def _redact_audit_log(session: AsyncSession, organization_id: str) -> None:
        await gdpr_repository.forget_audit_authors(session, organization_id)
        after: int | None = None
        while True:
            rows = await gdpr_repository.audit_entries_page(
                session, organization_id, after, PAGE_SIZE
            )
            changed = []
            for row in rows:
                before, later = redact(row.before), redact(row.after)
                if before != row.before or later != row.after:
                    row.before, row.after = before, later
                    changed.append(row)
            await repository.add(session, *changed)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1].id


def _renews(subscription: Subscription) -> bool:
    return subscription.status != "canceled" and not subscription.cancel_at_period_end


def _encode(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(", ", ": "))


async def _items(items: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    first = True
    async for item in items:
        yield ((b"" if first else b", ") + _encode(item).encode())
        first = False
