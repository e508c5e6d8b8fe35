"""`deleteOrganization(confirm)`: personal data erased, keys revoked, the account closed, the
invoices kept as issued; owners only, audited without the erased data."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.models import Invoice, OrganizationSettings, Subscription
from core.audit import AuditEntry
from core.orgs import ApiKey, Member, Organization
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.gdpr.support import (
    CONTACT,
    DELETE,
    INVITED_EMAIL,
    OWNER_NAME,
    SETTINGS,
    export_url,
    mutate,
    populate,
)
from tests.support import graphql, usage_events

pytestmark = pytest.mark.anyio

USAGE = {"events": [{"resource": "tokens", "amount": 1, "idempotency_key": "after-deletion"}]}


async def rows(runtime: Runtime, table: Any, organization_id: str) -> list[Any]:
    async with runtime.db.read() as session:
        statement = select(table).where(col(table.organization_id) == organization_id)
        return list((await session.execute(statement)).scalars())


async def test_a_wrong_confirmation_is_refused_naming_confirm_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Acme")
    body = await graphql(client, account.owner_api_key, DELETE, {"confirm": "acme"})
    answer = body["data"]["deleteOrganization"]
    assert answer["__typename"] == "InvalidInputError"
    assert answer["field"] == "confirm" and answer["code"] == "INVALID_INPUT"
    assert "name" in answer["message"]
    (member,) = await rows(runtime, Member, account.organization.id)
    assert member.email == account.owner.email
    assert all(
        key.revoked_at is None for key in await rows(runtime, ApiKey, account.organization.id)
    )
    page = await graphql(client, account.owner_api_key, "{ organization { name } }")
    assert page["data"]["organization"]["name"] == "Acme"


async def test_deletion_erases_personal_data_closes_the_account_and_keeps_invoices(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Jane's Shop")
    organization_id = account.organization.id
    await populate(runtime, client, account)
    invoices_before = {
        row.id: row.document for row in await rows(runtime, Invoice, organization_id)
    }
    assert invoices_before

    answer = await mutate(client, account.owner_api_key, DELETE, {"confirm": "Jane's Shop"})

    assert answer == {
        "__typename": "OrganizationDeleted", "organizationId": organization_id,
        "membersErased": 2, "keysRevoked": 2, "usageEventsCleared": 5,
    }  # fmt: skip
    members = await rows(runtime, Member, organization_id)
    assert all(m.email.endswith("@erased.invalid") and m.name == "" for m in members)
    (settings,) = await rows(runtime, OrganizationSettings, organization_id)
    assert (settings.billing_email, settings.legal_name) == (None, None)
    assert (settings.address_line1, settings.address_line2) == (None, None)
    assert settings.country == "FR"
    async with runtime.db.read() as session:
        events = await usage_events(session, organization_id)
    assert len(events) == 5 and all(event.attributes is None for event in events)
    assert {event.model for event in events if event.resource == "tokens"} == {"gpt-4o"}
    assert all(key.revoked_at is not None for key in await rows(runtime, ApiKey, organization_id))
    (subscription,) = await rows(runtime, Subscription, organization_id)
    assert subscription.status == "canceled" and subscription.canceled_at is not None
    async with runtime.db.read() as session:
        organization = await session.get(Organization, organization_id)
    assert organization is not None and organization.usage_suspended_from is not None
    assert organization.name == "Jane's Shop"
    invoices_after = {row.id: row.document for row in await rows(runtime, Invoice, organization_id)}
    assert invoices_after == invoices_before

    page = await graphql(client, account.owner_api_key, "{ organization { name } }")
    assert page["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    usage = await client.post(
        "/v1/usage", json=USAGE, headers={"Authorization": f"Bearer {account.service_api_key}"}
    )
    assert usage.status_code == 401


async def test_deletion_is_audited_and_the_log_keeps_no_erased_data(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Jane's Shop")
    organization_id = account.organization.id
    await populate(runtime, client, account)
    await export_url(client, account.owner_api_key)
    await mutate(client, account.owner_api_key, DELETE, {"confirm": "Jane's Shop"})

    entries = await rows(runtime, AuditEntry, organization_id)
    (deleted,) = [entry for entry in entries if entry.action == "organization.deleted"]
    assert deleted.api_key_id is not None and deleted.member_id == account.owner.id
    assert deleted.member_email is None
    assert {"settings.updated", "member.invited", "organization.exported"} <= {
        entry.action for entry in entries
    }
    text = json.dumps(
        [[e.member_email, e.subject, e.before, e.after] for e in entries], ensure_ascii=False
    )
    erased = [account.owner.email, INVITED_EMAIL, OWNER_NAME, CONTACT["billingEmail"]]
    for value in [*erased, CONTACT["addressLine1"], CONTACT["addressLine2"]]:
        assert value not in text, value


async def test_a_business_keeps_its_legal_name_and_vat_id(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Acme")
    business = {"legalName": "Acme SAS", "billingEmail": "billing@acme.example",
                "country": "FR", "vatId": "FR40303265045"}  # fmt: skip
    await mutate(client, account.owner_api_key, SETTINGS, {"input": business})
    await mutate(client, account.owner_api_key, DELETE, {"confirm": "Acme"})
    (settings,) = await rows(runtime, OrganizationSettings, account.organization.id)
    assert (settings.legal_name, settings.vat_id) == ("Acme SAS", "FR40303265045")
    assert settings.billing_email is None
