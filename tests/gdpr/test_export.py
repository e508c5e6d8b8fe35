"""`exportOrganizationData`: a signed, expiring link to a JSON archive of everything Tally
holds about the organization, for its owners only, audited."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

import billing.gdpr
from core.audit import AuditEntry
from core.clock import FrozenClock
from core.orgs import Role
from tally.runtime import Runtime
from tests.conftest import OpenOrg
from tests.gdpr.support import (
    ATTRIBUTES,
    DELETE,
    EXPORT,
    INVITED_EMAIL,
    export_url,
    local_path,
    populate,
)
from tests.support import graphql, member_key

pytestmark = pytest.mark.anyio


async def download(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(local_path(url))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    archive: dict[str, Any] = json.loads(response.content)
    return archive


async def test_the_archive_holds_everything_about_the_organization_and_no_secret(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org(name="Jane's Shop")
    await populate(runtime, client, account)
    url = await export_url(client, account.owner_api_key)
    assert url.startswith(f"{runtime.links.public_url}/exports/organization?")

    response = await client.get(local_path(url))
    archive = await download(client, url)

    assert archive["format"] == "tally-organization-export/1"
    assert archive["organization"]["id"] == account.organization.id
    assert archive["organization"]["name"] == "Jane's Shop"
    emails = {member["email"] for member in archive["members"]}
    assert emails == {account.owner.email, INVITED_EMAIL}
    assert len(archive["api_keys"]) == 2
    for key in archive["api_keys"]:
        assert "secret_hash" not in key and key["prefix"]
    for secret in (account.owner_api_key, account.service_api_key):
        assert secret not in response.text
    assert archive["settings"]["billing_email"] == "jane.doe@example.com"
    assert archive["settings"]["legal_name"] == "Jane Doe"
    assert archive["subscription"]["status"] == "active"
    assert [row["plan_id"] for row in archive["plan_history"]][-1] == "scale"
    assert [row["to_plan_id"] for row in archive["plan_changes"]] == ["scale"]
    assert [row["topup_id"] for row in archive["topups"]] == ["tokens-50m"]
    assert archive["invoices"], "the plan change and the top-up issue invoices"
    for invoice in archive["invoices"]:
        assert invoice["number"] and invoice["document"]["lines"]
    events = [event for event in archive["usage_events"] if event["resource"] == "tokens"]
    assert {event["resource"] for event in archive["usage_events"]} == {"tokens", "seats"}
    assert sorted(event["idempotency_key"] for event in events) == [
        "event-0", "event-1", "event-2"
    ]  # fmt: skip
    assert all(event["attributes"]["agent_id"] == ATTRIBUTES["agent_id"] for event in events)
    actions = [entry["action"] for entry in archive["audit_log"]]
    assert "settings.updated" in actions and actions[-1] == "organization.exported"


async def test_usage_events_are_read_page_by_page_into_one_valid_archive(
    runtime: Runtime,
    client: httpx.AsyncClient,
    open_org: OpenOrg,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(billing.gdpr, "PAGE_SIZE", 2)
    account = await open_org()
    await populate(runtime, client, account, events=7)
    archive = await download(client, await export_url(client, account.owner_api_key))
    keys = [
        event["idempotency_key"]
        for event in archive["usage_events"]
        if event["resource"] == "tokens"
    ]
    assert keys == [f"event-{number}" for number in range(7)]
    assert len({entry["id"] for entry in archive["audit_log"]}) == len(archive["audit_log"]) > 2


async def test_the_link_expires_after_a_day_and_refuses_tampering(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg, clock: FrozenClock
) -> None:
    account = await open_org()
    other = await open_org(name="Other Org")
    url = local_path(await export_url(client, account.owner_api_key))
    path, query = url.split("?")
    params = {name: values[0] for name, values in parse_qs(query).items()}

    def variant(**changes: str) -> str:
        return f"{path}?{urlencode({**params, **changes})}"

    signature = params["signature"]
    tampered = {
        "signature": variant(signature=("A" if signature[0] != "A" else "B") + signature[1:]),
        "org": variant(org=other.organization.id),
        "expires": variant(expires=str(int(params["expires"]) + 86_400)),
        "missing": f"{path}?{urlencode({'org': params['org'], 'expires': params['expires']})}",
    }
    for name, forged in tampered.items():
        response = await client.get(forged)
        assert response.status_code == 403, name
        assert response.json()["error"]["code"] == "INVALID_LINK", name
    # Signed under its own subject, an export link's signature opens no invoice.
    invoice_link = f"/billing/invoices/organization-export/html?{query}"
    passed_off = await client.get(invoice_link)
    assert passed_off.status_code == 403
    assert passed_off.json()["error"]["code"] == "INVALID_LINK"

    clock.advance(timedelta(hours=24))
    assert (await client.get(url)).status_code == 200
    clock.advance(timedelta(seconds=1))
    expired = await client.get(url)
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "LINK_EXPIRED"
    assert "exportOrganizationData" in expired.json()["error"]["message"]


async def test_only_owners_may_export_or_delete(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    for role in (Role.ADMIN, Role.BILLING, Role.MEMBER):
        key = await member_key(runtime, account, role)
        for query, variables in ((EXPORT, {}), (DELETE, {"confirm": "Test Org"})):
            body = await graphql(client, key, query, variables)
            assert body["data"] is None, body
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "FORBIDDEN", error
            assert "owner" in error["message"]
    service = await graphql(client, account.service_api_key, EXPORT)
    assert service["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with runtime.db.read() as session:
        statement = select(col(AuditEntry.action)).where(
            col(AuditEntry.organization_id) == account.organization.id
        )
        actions = set((await session.execute(statement)).scalars())
    assert not actions & {"organization.exported", "organization.deleted"}


async def test_the_export_is_audited_with_who_asked(
    runtime: Runtime, client: httpx.AsyncClient, open_org: OpenOrg
) -> None:
    account = await open_org()
    await export_url(client, account.owner_api_key)
    body = await graphql(
        client,
        account.owner_api_key,
        "{ organization { auditLog(first: 1) { nodes { action member { email } after } } } }",
    )
    (entry,) = body["data"]["organization"]["auditLog"]["nodes"]
    assert entry["action"] == "organization.exported"
    assert entry["member"]["email"] == account.owner.email
    assert "expires_at" in entry["after"]
    assert urlsplit(runtime.links.public_url).scheme in ("http", "https")
