"""GraphQL of an organization's billing settings: reading them and changing them."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry import Parent

from billing import repository
from billing.org_settings import update_settings
from billing.settings import SETTINGS_FIELDS, BillingSettings, SettingsError
from graph.errors import InvalidInputError, NotFoundError
from graph.permissions import Info
from graph.targets import organization_not_found, target
from tally.orgs import Organization as OrganizationRow


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
    own = target(info, organization_id)
    if own is None:
        return organization_not_found()
    changes = {
        name: getattr(input, name)
        for name in SETTINGS_FIELDS
        if getattr(input, name) is not strawberry.UNSET
    }
    runtime = info.context.runtime
    try:
        async with runtime.db.write() as session:
            if await repository.lock_subscription(session, own) is None:
                return organization_not_found()
            settings = await update_settings(session, own, changes, runtime.clock.now())
    except SettingsError as error:
        return InvalidInputError(code="INVALID_INPUT", message=error.message, field=error.field)
    return OrganizationSettings.of(settings)


async def organization_settings(root: Parent[OrganizationRow], info: Info) -> OrganizationSettings:
    return OrganizationSettings.of(await info.context.loaders.settings.load(root.id))
