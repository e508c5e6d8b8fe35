"""The per-request context: the caller, the services and the request's DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

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
    """Each loads once per request, however many fields ask."""

    services: Services
    organization: DataLoader[str, Organization | None] = field(init=False)
    members: DataLoader[str, Sequence[Member]] = field(init=False)
    usage: DataLoader[str, UsageSnapshot] = field(init=False)
    subscription: DataLoader[str, SubscriptionView] = field(init=False)
    settings: DataLoader[str, BillingSettings] = field(init=False)

    def __post_init__(self) -> None:
        self.organization = DataLoader(self._organizations)
        self.members = DataLoader(self._members)
        self.usage = DataLoader(self._usage)
        self.subscription = DataLoader(self._subscriptions)
        self.settings = DataLoader(self._settings)

    async def _organizations(self, ids: list[str]) -> list[Organization | None]:
        async with self.services.db.read() as session:
            return [await orgs_repository.get_organization(session, i) for i in ids]

    async def _members(self, ids: list[str]) -> list[Sequence[Member]]:
        async with self.services.db.read() as session:
            return [await orgs_repository.list_members(session, i) for i in ids]

    async def _usage(self, ids: list[str]) -> list[UsageSnapshot]:
        snapshots = []
        async with self.services.db.read() as session:
            for organization_id in ids:
                organization = await self.organization.load(organization_id)
                assert organization is not None
                snapshots.append(await self.services.engine.usage(session, organization))
        return snapshots

    async def _subscriptions(self, ids: list[str]) -> list[SubscriptionView]:
        views = []
        async with self.services.db.read() as session:
            for organization_id in ids:
                organization = await self.organization.load(organization_id)
                assert organization is not None
                views.append(
                    await subscription_of(
                        session, self.services.engine, self.services.catalog, organization
                    )
                )
        return views

    async def _settings(self, ids: list[str]) -> list[BillingSettings]:
        async with self.services.db.read() as session:
            return [await settings_of(session, organization_id) for organization_id in ids]


@dataclass
class TallyContext:
    """What every resolver gets as `info.context`."""

    request: Request
    response: Response | None
    services: Services
    principal: Principal | None
    loaders: Loaders
