"""Helpers of the GDPR tests: an organization with something of everything, and its export."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from billing.accounts import OpenedAccount
from core.orgs import Member
from tally.runtime import Runtime
from tests.support import graphql

EXPORT = """mutation { exportOrganizationData {
  __typename ... on OrganizationExport { url expiresAt } ... on Error { code message } } }"""

DELETE = """mutation($confirm: String!) { deleteOrganization(confirm: $confirm) {
  __typename
  ... on OrganizationDeleted { organizationId membersErased keysRevoked usageEventsCleared }
  ... on InvalidInputError { field }
  ... on Error { code message } } }"""

CONSUME = """mutation($key: String!, $attributes: JSON) {
  consumeUsage(resource: "tokens", amount: 100, idempotencyKey: $key, attributes: $attributes) {
  __typename } }"""

SETTINGS = """mutation($input: OrganizationSettingsInput!) {
  updateOrganizationSettings(input: $input) { __typename } }"""

ATTRIBUTES = {"model": "gpt-4o", "action": "chat_reply", "agent_id": "agent-of-jane"}
CONTACT = {
    "legalName": "Jane Doe",
    "billingEmail": "jane.doe@example.com",
    "addressLine1": "1 rue de la Paix",
    "addressLine2": "Bâtiment B",
    "postalCode": "75002",
    "city": "Paris",
    "country": "FR",
}
INVITED_EMAIL = "john.roe@example.com"
OWNER_NAME = "Jane Doe"
INVITE = """mutation($email: String!) { inviteMember(email: $email) { __typename } }"""


async def mutate(
    client: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run a mutation that must succeed; its one field's answer."""
    body = await graphql(client, key, query, variables)
    assert "errors" not in body, body
    (answer,) = body["data"].values()
    assert "Error" not in answer["__typename"], answer
    result: dict[str, Any] = answer
    return result


async def populate(
    runtime: Runtime, client: httpx.AsyncClient, account: OpenedAccount, events: int = 3
) -> None:
    """Settings of a person, an invited member, `events` usage events with attributes, a plan
    change (an invoice), a top-up."""
    key = account.owner_api_key
    await mutate(client, key, SETTINGS, {"input": CONTACT})
    await mutate(client, key, INVITE, {"email": INVITED_EMAIL})
    async with runtime.db.write() as session:
        owner = await session.get(Member, account.owner.id)
        assert owner is not None
        owner.name = OWNER_NAME
    for number in range(events):
        await mutate(client, key, CONSUME, {"key": f"event-{number}", "attributes": ATTRIBUTES})
    await mutate(
        client, key, 'mutation { changePlan(planId: "scale", timing: NOW, idempotencyKey: "up") '
        "{ __typename } }",
    )  # fmt: skip
    await mutate(
        client, key, 'mutation { purchaseTopUp(topUpId: "tokens-50m", idempotencyKey: "t1") '
        "{ __typename } }",
    )  # fmt: skip


def local_path(url: str) -> str:
    """The path and query of an absolute link, to ask the app under test."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def export_url(client: httpx.AsyncClient, key: str) -> str:
    """The link `exportOrganizationData` hands out."""
    answer = await mutate(client, key, EXPORT)
    url: str = answer["url"]
    return url
