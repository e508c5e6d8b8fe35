"""Opening an organization's account: the organization on a plan, its owner, its keys.

The owner takes a seat through the limit engine in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billing import repository as billing_repository
from billing.catalog import Catalog
from billing.models import Subscription
from limits import LimitEngine
from tally.auth import mint_api_key
from tally.orgs import ApiKey, Member, Organization, Role
from tally.orgs import repository as orgs_repository

OWNER_KEY_NAME = "owner key"
SERVICE_KEY_NAME = "service key"


class AccountError(ValueError):
    """An account cannot be opened as asked."""


class SeatLimitReached(AccountError):
    """Every seat of the plan is taken."""


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
) -> OpenedAccount:
    """Create an organization on a plan with an owner member, an owner key and a service key."""
    plan = catalog.get(plan_id)
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("an organization name needs 1 to 200 characters")
    now = engine.clock.now()
    day = anchor_day if anchor_day is not None else now.day
    if not 1 <= day <= 31:
        raise AccountError(f"the billing anchor day must be 1 to 31, not {day}")
    organization = Organization(
        name=name, plan_id=plan.id, billing_anchor_day=day, is_demo=is_demo, created_at=now
    )
    await orgs_repository.add(session, organization)
    await billing_repository.add(
        session, Subscription(organization_id=organization.id, started_at=now)
    )
    try:
        owner = await add_member(
            session, engine, organization, email=owner_email, role=Role.OWNER, status="active"
        )
    except SeatLimitReached:
        raise AccountError(f"plan {plan.id!r} allows no seat for the owner") from None
    owner_key, owner_secret = mint_api_key(
        organization.id, OWNER_KEY_NAME, role=Role.OWNER, service=False, at=now
    )
    service_key, service_secret = mint_api_key(
        organization.id, SERVICE_KEY_NAME, role=None, service=True, at=now
    )
    await orgs_repository.add(session, owner_key, service_key)
    return OpenedAccount(organization, owner, owner_secret, service_secret)


async def add_member(
    session: AsyncSession,
    engine: LimitEngine,
    organization: Organization,
    *,
    email: str,
    role: Role = Role.MEMBER,
    status: str = "invited",
) -> Member:
    """Add a member, taking a seat in the same transaction; SeatLimitReached when full."""
    member = Member(
        organization_id=organization.id,
        email=email,
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
        raise SeatLimitReached(
            f"all {seat.limit} seats of the plan are taken; remove a member or change plan"
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
