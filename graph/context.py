"""The per-request context: the caller, the services and the request's DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from billing.org_settings import settings_of
from billing.settings import BillingSettings
from billing.subscriptions import SubscriptionView, subscription_of
from core.auth import Principal
from core.orgs import Member, Organization
from core.orgs import repository as orgs_repository
from graph.services import Services
from limits import UsageSnapshot


@dataclass
class Loaders:
    """Each loads once per request, however many fields ask, all of them through one read
    session: opened at the first load, closed when the operation ends (`CloseLoaders`). The
    caller's organization, read with its key, is loaded already (`caller_organization`)."""

    services: Services
    caller_organization: Organization | None = None
    organization: DataLoader[str, Organization | None] = field(init=False)
    members: DataLoader[str, Sequence[Member]] = field(init=False)
    usage: DataLoader[str, UsageSnapshot] = field(init=False)
    subscription: DataLoader[str, SubscriptionView] = field(init=False)
    settings: DataLoader[str, BillingSettings] = field(init=False)
    _session: AsyncSession | None = field(default=None, init=False, repr=False)
    _opened: AsyncExitStack = field(default_factory=AsyncExitStack, init=False, repr=False)
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.organization = DataLoader(self._organizations)
        self.members = DataLoader(self._members)
        self.usage = DataLoader(self._usage)
        self.subscription = DataLoader(self._subscriptions)
        self.settings = DataLoader(self._settings)
        if self.caller_organization is not None:
            self.organization.prime(self.caller_organization.id, self.caller_organization)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        """The operation's session, to one loader at a time (a session runs one statement
        at a time)."""
        async with self._turn:
            if self._session is None:
                self._session = await self._opened.enter_async_context(self.services.db.read())
            yield self._session

    async def close(self) -> None:
        """Give the session back; a later load opens another."""
        async with self._turn:
            self._session = None
            await self._opened.aclose()

    async def _organizations(self, ids: list[str]) -> list[Organization | None]:
        async with self._reading() as session:
            return [await orgs_repository.get_organization(session, i) for i in ids]

    async def _members(self, ids: list[str]) -> list[Sequence[Member]]:
        async with self._reading() as session:
            return [await orgs_repository.list_members(session, i) for i in ids]

    async def _usage(self, ids: list[str]) -> list[UsageSnapshot]:
        organizations = await self._existing(ids)
        async with self._reading() as session:
            return [await self.services.engine.usage(session, o) for o in organizations]

    async def _subscriptions(self, ids: list[str]) -> list[SubscriptionView]:
        organizations = await self._existing(ids)
        services = self.services
        async with self._reading() as session:
            return [
                await subscription_of(session, services.engine, services.catalog, organization)
                for organization in organizations
            ]

    async def _settings(self, ids: list[str]) -> list[BillingSettings]:
        async with self._reading() as session:
            return [await settings_of(session, organization_id) for organization_id in ids]

    async def _existing(self, ids: list[str]) -> list[Organization]:
        """The organizations of `ids`, which exist (resolvers ask about their parent's)."""
        organizations = await self.organization.load_many(ids)
        found = [organization for organization in organizations if organization is not None]
        assert len(found) == len(ids), "organization fields are asked of organizations only"
        return found


class CloseLoaders(SchemaExtension):
    """Closes the operation's loader session when the operation ends."""

    async def on_operation(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context = self.execution_context.context
            if isinstance(context, TallyContext):
                await context.loaders.close()


@dataclass
class TallyContext:
    """What every resolver gets as `info.context`."""

    request: Request
    response: Response | None
    services: Services
    principal: Principal | None
    loaders: Loaders
