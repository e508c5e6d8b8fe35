"""Reading and changing an organization's billing settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger_repository, repository
from billing.models import OrganizationSettings
from billing.settings import SETTINGS_FIELDS, BillingSettings, validate_settings
from core import audit


async def settings_of(session: AsyncSession, organization_id: str) -> BillingSettings:
    row = await ledger_repository.get_settings(session, organization_id)
    if row is None:
        return BillingSettings()
    return BillingSettings(**{name: getattr(row, name) for name in SETTINGS_FIELDS})


async def update_settings(
    session: AsyncSession,
    organization_id: str,
    changes: Mapping[str, str | None],
    at: datetime,
) -> BillingSettings:
    """Validate `changes` (snake_case names; None clears) and store the result.

    SettingsError names the refused field; nothing is written then.
    """
    current = await settings_of(session, organization_id)
    updated = validate_settings(current, changes)
    row = await ledger_repository.get_settings(session, organization_id)
    if row is None:
        row = OrganizationSettings(organization_id=organization_id, updated_at=at)
    for name, value in asdict(updated).items():
        setattr(row, name, value)
    row.updated_at = at
    await repository.add(session, row)
    old, new = asdict(current), asdict(updated)
    changed = sorted(name for name in new if new[name] != old[name])
    if changed:
        await audit.record(
            session,
            organization_id,
            "settings.updated",
            at=at,
            before={name: old[name] for name in changed},
            after={name: new[name] for name in changed},
        )
    return updated
