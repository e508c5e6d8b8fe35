"""GraphQL of an organization's billing settings: reading them and changing them."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry import Parent

from billing.settings import SETTINGS_FIELDS, BillingSettings
from core.orgs import Organization as OrganizationRow
from graph.errors import InvalidInputError, NotFoundError
from graph.permissions import Info, target_id


@strawberry.type(description="Who is billed, where, and under which VAT ID; printed on invoices.")
class OrganizationSettings:
    legal_name: str | None
    billing_email: str | None
    address_line1: str | None
    address_line2: str | None
    postal_code: str | None
    city: str | None
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2, e.g. FR.")
    vat_id: str | None = strawberry.field(
        description="With its country prefix, e.g. FR12345678901."
    )

    @classmethod
    def of(cls, settings: BillingSettings) -> OrganizationSettings:
        return cls(**{name: getattr(settings, name) for name in SETTINGS_FIELDS})


@strawberry.input(description="Only the fields given change; null or blank clears one.")
class OrganizationSettingsInput:
    legal_name: str | None = strawberry.UNSET
    billing_email: str | None = strawberry.UNSET
    address_line1: str | None = strawberry.UNSET
    address_line2: str | None = strawberry.UNSET
    postal_code: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    vat_id: str | None = strawberry.UNSET


UpdateSettingsResult = Annotated[
    OrganizationSettings | InvalidInputError | NotFoundError,
    strawberry.union("UpdateSettingsResult"),
]


async def update_organization_settings(
    info: Info,
    *,
    organization_id: strawberry.ID | None = None,
    input: OrganizationSettingsInput,
) -> UpdateSettingsResult:
    changes = {
        name: getattr(input, name)
        for name in SETTINGS_FIELDS
        if getattr(input, name) is not strawberry.UNSET
    }
    own = target_id(info, organization_id)
    return OrganizationSettings.of(
        await info.context.services.billing.update_settings(own, changes)
    )


async def organization_settings(root: Parent[OrganizationRow], info: Info) -> OrganizationSettings:
    return OrganizationSettings.of(await info.context.loaders.settings.load(root.id))
