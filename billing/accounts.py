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
from core import audit
from core.auth import mint_api_key
from core.errors import ErrorCode, InvalidInput
from core.orgs import ApiKey, Member, Organization, Role
from core.orgs import repository as orgs_repository
from limits import LimitEngine, LimitExceeded
from limits import repository as usage_repository

OWNER_KEY_NAME = "owner key"
SERVICE_KEY_NAME = "service key"


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(InvalidInput):
    """An account change that cannot be made as asked; `field` names the culprit input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message, field=field)


class RoleTooHigh(InvalidInput):
    """A role above the caller's (a key, a member's role), or a change to someone above."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(ErrorCode.ROLE_TOO_HIGH, message, field=field)


class LastOwner(InvalidInput):
    """The organization's last owner can be neither removed nor demoted."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.LAST_OWNER, message, field="member_id")


def member_json(member: Member) -> dict[str, str]:
    """What the audit log keeps of a member."""
    return {"id": member.id, "email": member.email, "role": member.role, "status": member.status}


def key_json(key: ApiKey) -> dict[str, object]:
    """What the audit log keeps of a key (never its secret nor its hash)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role,
        "service": key.service,
        "member_id": key.member_id,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def check_role_at_most(role: Role, granter: Role | None, what: str, field: str = "role") -> None:
    """RoleTooHigh when `role` is above `granter`'s (None: Tally itself, which may all);
    `what` completes "... cannot have the role X, above yours"."""
    if granter is not None and not role.at_most(granter):
        raise RoleTooHigh(
            f"{what} cannot have the role {role.value}, above yours ({granter.value})", field
        )


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
    await usage_repository.add_organization_ref(session, organization.id)
    await billing_repository.add(session, _subscription(organization, plan, now))
    await plan_history.record(session, organization.id, plan.id, now)
    try:
        owner = await add_member(
            session, engine, organization, email=owner_email, role=Role.OWNER, status="active"
        )
    except LimitExceeded:
        raise AccountError(f"plan {plan.id!r} allows no seat for the owner") from None
    owner_key, owner_secret = mint_api_key(
        organization.id, OWNER_KEY_NAME, role=Role.OWNER, service=False, at=now, member_id=owner.id
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
    member_id: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key for the organization and its secret, shown once. A member key belongs to
    `member_id` (its role at most the member's); `expires_at`, if given, must be ahead."""
    now = engine.clock.now()
    if expires_at is not None and expires_at <= now:
        raise AccountError("expiresAt must be in the future", "expires_at")
    if member_id is not None and not service:
        member = await orgs_repository.find_member(session, organization.id, id=member_id)
        if member is None:
            raise AccountError("no such member", "member_id")
        if role is not None:
            check_role_at_most(role, Role(member.role), "a key of this member")
    key, secret = mint_api_key(
        organization.id,
        name,
        role=role,
        service=service,
        at=now,
        member_id=member_id,
        expires_at=expires_at,
    )
    await orgs_repository.add(session, key)
    await audit.record(
        session, organization.id, "api_key.created", at=now, subject=key.id, after=key_json(key)
    )
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
        member = await add_member(session, engine, organization, email=email, role=role)
    except IntegrityError:
        raise AccountError(f"{email} is already a member", "email") from None
    await audit.record(
        session,
        organization.id,
        "member.invited",
        at=engine.clock.now(),
        subject=member.id,
        after=member_json(member),
    )
    return member


async def remove_member(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    member_id: str,
    *,
    by: Role | None = None,
) -> Member | None:
    """Remove a member, revoke their keys and give their seat back, all at once; None when
    there is no such member. `by` (the remover's role) may not be below the member's."""
    member = await orgs_repository.find_member(session, organization.id, id=member_id)
    if member is None:
        return None
    check_role_at_most(Role(member.role), by, "a member you remove", "member_id")
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
        raise LastOwner("the last owner cannot be removed; make another member owner first")
    now = engine.clock.now()
    revoked = await orgs_repository.revoke_member_keys(session, organization.id, member.id, now)
    await orgs_repository.delete_member(session, member)
    await audit.record(
        session,
        organization.id,
        "member.removed",
        at=now,
        subject=member.id,
        before=member_json(member),
        after={"revoked_keys": revoked},
    )
    return member


async def change_member_role(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    member_id: str,
    role: Role,
    *,
    by: Role | None = None,
) -> Member | None:
    """Give a member another role; None when there is no such member. The new role and the
    member's current one may not be above `by` (the changer's role); the last owner keeps
    theirs. The member's keys above the new role are lowered to it."""
    member = await orgs_repository.find_member(session, organization.id, id=member_id)
    if member is None:
        return None
    check_role_at_most(Role(member.role), by, "a member whose role you change", "member_id")
    check_role_at_most(role, by, "a member")
    if member.role == role:
        return member
    if (
        member.role == Role.OWNER
        and await orgs_repository.count_owners(session, organization.id) <= 1
    ):
        raise LastOwner("the last owner cannot be demoted; make another member owner first")
    before = member_json(member)
    higher = [other.value for other in Role if not other.at_most(role)]
    await orgs_repository.lower_member_keys(session, organization.id, member.id, higher, role)
    member.role = role
    await orgs_repository.add(session, member)
    await audit.record(
        session,
        organization.id,
        "member.role_changed",
        at=engine.clock.now(),
        subject=member.id,
        before=before,
        after=member_json(member),
    )
    return member


async def revoke_api_key(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    key_id: str,
    *,
    by: Role | None = None,
) -> ApiKey | None:
    """Revoke a key at once; None when the organization has no such key. A member key with a
    role above `by` (the revoker's role) is refused."""
    key = await orgs_repository.find_api_key_by_id(session, organization.id, key_id)
    if key is None:
        return None
    if key.role is not None:
        check_role_at_most(Role(key.role), by, "a key you revoke", "api_key_id")
    if key.revoked_at is None:
        before = key_json(key)
        key.revoked_at = engine.clock.now()
        await session.flush()
        await audit.record(
            session,
            organization.id,
            "api_key.revoked",
            at=key.revoked_at,
            subject=key.id,
            before=before,
            after=key_json(key),
        )
    return key
