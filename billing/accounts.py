"""Opening an organization's account: the organization on a plan, its owner, its keys.

The owner takes a seat through the limit engine in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing import plan_history
from billing import repository as billing_repository
from billing.catalog import Catalog, Plan
from billing.models import Subscription
from billing.money import DEFAULT_LOCALE, check_locale
from core.auth import mint_api_key
from core.errors import ErrorCode, InvalidInput
from core.orgs import ApiKey, Member, Organization, Role
from core.orgs import repository as orgs_repository
from limits import LimitEngine, LimitExceeded

OWNER_KEY_NAME = "owner key"
SERVICE_KEY_NAME = "service key"


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(InvalidInput):
    """An account change that cannot be made as asked; `field` names the culprit input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message, field=field)


@dataclass(frozen=True)
class OpenedAccount:
    """A new organization and the secrets of its first keys (shown once)."""

    organization: Organization
    owner: Member
    owner_api_key: str
    service_api_key: str


async def open_account(
    session: AsyncSession,
    engine: LimitEngine,
    catalog: Catalog,
    *,
    name: str,
    plan_id: str,
    owner_email: str,
    anchor_day: int | None = None,
    is_demo: bool = False,
    currency: str | None = None,
    locale: str | None = None,
) -> OpenedAccount:
    """Create an organization on a plan with an owner member, an owner key and a service key.

    `currency` (every amount of the organization's, for good) defaults to the plan's default
    currency; one the plan is not offered in is refused (CURRENCY_NOT_OFFERED). `locale`
    (how amounts are formatted) defaults to "en".
    """
    plan = catalog.get(plan_id)
    chosen_currency = plan.price(currency.strip().upper()).currency if currency else plan.currency
    chosen_locale = _locale(locale)
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("an organization name needs 1 to 200 characters")
    now = engine.clock.now()
    day = anchor_day if anchor_day is not None else now.day
    if not 1 <= day <= 31:
        raise AccountError(f"the billing anchor day must be 1 to 31, not {day}")
    organization = Organization(
        name=name,
        plan_id=plan.id,
        billing_anchor_day=day,
        is_demo=is_demo,
        created_at=now,
        currency=chosen_currency,
        locale=chosen_locale,
    )
    await orgs_repository.add(session, organization)
    await billing_repository.add(session, _subscription(organization, plan, now))
    await plan_history.record(session, organization.id, plan.id, now)
    try:
        owner = await add_member(
            session, engine, organization, email=owner_email, role=Role.OWNER, status="active"
        )
    except LimitExceeded:
        raise AccountError(f"plan {plan.id!r} allows no seat for the owner") from None
    owner_key, owner_secret = mint_api_key(
        organization.id, OWNER_KEY_NAME, role=Role.OWNER, service=False, at=now
    )
    service_key, service_secret = mint_api_key(
        organization.id, SERVICE_KEY_NAME, role=None, service=True, at=now
    )
    await orgs_repository.add(session, owner_key, service_key)
    return OpenedAccount(organization, owner, owner_secret, service_secret)


def _locale(locale: str | None) -> str:
    if locale is None or not locale.strip():
        return DEFAULT_LOCALE
    try:
        return check_locale(locale.strip())
    except ValueError as error:
        raise AccountError(str(error), "locale") from None


def _subscription(organization: Organization, plan: Plan, now: datetime) -> Subscription:
    """A new subscription: `trialing` until the plan's trial ends, else `active`."""
    if plan.trial_days:
        return Subscription(
            organization_id=organization.id,
            started_at=now,
            status="trialing",
            trial_ends_at=now + timedelta(days=plan.trial_days),
        )
    return Subscription(organization_id=organization.id, started_at=now)


async def add_member(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    *,
    email: str,
    role: Role = Role.MEMBER,
    status: str = "invited",
) -> Member:
    """Add a member, taking a seat in the same transaction; LimitExceeded when full.

    Emails are kept in lower case, so the unique (organization, email) key holds whatever
    the case an invitation used."""
    member = Member(
        organization_id=organization.id,
        email=email.strip().lower(),
        role=role,
        status=status,
        created_at=engine.clock.now(),
    )
    seat = await engine.consume(
        session,
        organization,
        "seats",
        1,
        idempotency_key=f"member:{member.id}",
        attributes={"member_id": member.id},
    )
    if not seat.allowed:
        raise LimitExceeded(
            f"all {seat.limit} seats of the plan are taken; remove a member or change plan",
            resource="seats",
            used=seat.used,
            limit=seat.limit,
            requested=1,
        )
    await orgs_repository.add(session, member)
    return member


async def create_api_key(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    *,
    name: str,
    role: Role | None,
    service: bool = False,
) -> tuple[ApiKey, str]:
    """A new key for the organization and its secret, shown once."""
    key, secret = mint_api_key(
        organization.id, name, role=role, service=service, at=engine.clock.now()
    )
    await orgs_repository.add(session, key)
    return key, secret


async def invite_member(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    *,
    email: str,
    role: Role = Role.MEMBER,
) -> Member:
    """Invite a person: they hold a seat from now on. LimitExceeded when the plan is full."""
    email = email.strip()
    if len(email) > 320 or not EMAIL.match(email):
        raise AccountError(f"{email!r} is not an email address", "email")
    if await orgs_repository.find_member(session, organization.id, email=email):
        raise AccountError(f"{email} is already a member", "email")
    try:
        return await add_member(session, engine, organization, email=email, role=role)
    except IntegrityError:
        raise AccountError(f"{email} is already a member", "email") from None


async def remove_member(
    session: AsyncSession, engine: LimitEngine, organization: Organization, member_id: str
) -> Member | None:
    """Remove a member and give their seat back; None when there is no such member."""
    member = await orgs_repository.find_member(session, organization.id, id=member_id)
    if member is None:
        return None
    await engine.consume(
        session,
        organization,
        "seats",
        -1,
        idempotency_key=f"member-removed:{member.id}",
        attributes={"member_id": member.id},
    )
    if (
        member.role == Role.OWNER
        and await orgs_repository.count_owners(session, organization.id) <= 1
    ):
        raise AccountError("the last owner cannot be removed", "member_id")
    await orgs_repository.delete_member(session, member)
    return member


async def revoke_api_key(
    session: AsyncSession, engine: LimitEngine, organization: Organization, key_id: str
) -> ApiKey | None:
    """Revoke a key at once; None when the organization has no such key."""
    key = await orgs_repository.find_api_key_by_id(session, organization.id, key_id)
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = engine.clock.now()
        await session.flush()
    return key
