"""Writing and reading the audit log.

Who acts is set once per request, when its key is authenticated (`acting`), and read by
`record`, which every audited change calls in its own transaction: the entry commits with the
change or not at all. A change made by Tally itself (a period close, the command line) has no
actor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import repository
from core.audit.models import AuditEntry
from core.errors import ErrorCode, InvalidInput
from core.orgs import repository as orgs_repository

MAX_PAGE = 100


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the key used (id and prefix) and the member it belongs to, if any."""

    api_key_id: str
    api_key_prefix: str
    member_id: str | None = None


_actor: ContextVar[Actor | None] = ContextVar("tally_audit_actor", default=None)


def current_actor() -> Actor | None:
    """The actor of the request being served; None outside a request (Tally itself)."""
    return _actor.get()


@contextmanager
def acting(actor: Actor | None) -> Iterator[None]:
    """Attribute the changes made inside the block to `actor`."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def jsonable(value: Any) -> Any:
    """`value` with instants, dates and enums as strings, ready for a JSON column."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


async def record(
    session: AsyncSession,
    organization_id: str,
    action: str,
    *,
    at: datetime,
    subject: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry for a change made in `session`'s transaction, by the current actor."""
    actor = current_actor()
    email = None
    if actor is not None and actor.member_id is not None:
        member = await orgs_repository.find_member(session, organization_id, id=actor.member_id)
        email = member.email if member is not None else None
    entry = AuditEntry(
        organization_id=organization_id,
        at=at,
        action=action,
        subject=subject,
        member_id=actor.member_id if actor else None,
        member_email=email,
        api_key_id=actor.api_key_id if actor else None,
        api_key_prefix=actor.api_key_prefix if actor else None,
        before=jsonable(before) if before is not None else None,
        after=jsonable(after) if after is not None else None,
    )
    await repository.add(session, entry)
    return entry


@dataclass(frozen=True)
class AuditPage:
    """Entries newest first, and the cursor after the last one."""

    entries: Sequence[AuditEntry]
    has_next_page: bool
    end_cursor: str | None


def cursor_of(entry: AuditEntry) -> str:
    return base64.urlsafe_b64encode(f"audit|{entry.id}".encode()).decode()


def parse_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        if kind != "audit" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(
            ErrorCode.INVALID_INPUT, f"invalid cursor {cursor!r}", field="after"
        ) from None


async def page(
    session: AsyncSession, organization_id: str, first: int, after: str | None
) -> AuditPage:
    """A page of the organization's log, newest first, after the cursor `after`."""
    if not 1 <= first <= MAX_PAGE:
        raise InvalidInput(
            ErrorCode.INVALID_INPUT, f"first must be 1 to {MAX_PAGE}, not {first}", field="first"
        )
    before_id = parse_cursor(after) if after else None
    rows = await repository.page(session, organization_id, first + 1, before_id)
    entries = rows[:first]
    return AuditPage(entries, len(rows) > first, cursor_of(entries[-1]) if entries else None)
