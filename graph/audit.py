"""GraphQL of the audit log: `Organization.auditLog`, for owners and admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

from core.audit import AuditEntry as AuditEntryRow
from core.orgs import Organization as OrganizationRow
from graph.billing import PageInfo
from graph.permissions import Info, Managers, query


@strawberry.type(description="The key a change was made with.")
class AuditKey:
    id: strawberry.ID
    prefix: str


@strawberry.type(description="The member who made a change (their email as it was then).")
class AuditMember:
    id: strawberry.ID
    email: str | None


@strawberry.type(
    description="A change to the organization: what, when, by whom (null: Tally itself, e.g. a "
    "period close), and the values before and after it."
)
class AuditEntry:
    id: strawberry.ID
    at: datetime
    action: str = strawberry.field(
        description="plan.changed, plan.change_scheduled, plan.change_canceled, "
        "subscription.cancel_at_period_end, member.invited, member.removed, "
        "member.role_changed, api_key.created, api_key.revoked, settings.updated, "
        "topup.purchased, spend_cap.set"
    )
    subject: str | None = strawberry.field(description="The id of what changed, if any.")
    member: AuditMember | None
    api_key: AuditKey | None
    before: JSON | None
    after: JSON | None

    @classmethod
    def of(cls, row: AuditEntryRow) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(row.id)),
            at=row.at,
            action=row.action,
            subject=row.subject,
            member=AuditMember(id=strawberry.ID(row.member_id), email=row.member_email)
            if row.member_id
            else None,
            api_key=AuditKey(id=strawberry.ID(row.api_key_id), prefix=row.api_key_prefix or "")
            if row.api_key_id
            else None,
            before=JSON(row.before) if row.before is not None else None,
            after=JSON(row.after) if row.after is not None else None,
        )


@strawberry.type(description="Audit log entries, newest first.")
class AuditLogConnection:
    nodes: list[AuditEntry]
    page_info: PageInfo


async def _audit_log(
    root: Parent[OrganizationRow], info: Info, first: int = 20, after: str | None = None
) -> AuditLogConnection:
    page = await info.context.services.accounts.audit_log(root.id, first, after)
    return AuditLogConnection(
        nodes=[AuditEntry.of(row) for row in page.entries],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )


def organization_fields() -> dict[str, Any]:
    """The audit side of `Organization`."""
    return {
        "audit_log": query(
            _audit_log,
            permission=Managers,
            description="Changes to the organization (plans, members, keys, settings, top-ups, "
            "the spend cap), newest first; `first` 1 to 100.",
        )
    }
