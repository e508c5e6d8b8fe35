"""Billing as a plugin of the limit engine: limits come from the organization's plan."""

from __future__ import annotations

from billing.catalog import Catalog
from core.orgs import Organization
from limits import Limit, Resource, hookimpl


class PlanLimits:
    """Answers `tally_resolve_limit` from the plan catalog (trylast: a partner may override)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @hookimpl(trylast=True)
    def tally_resolve_limit(self, organization: Organization, resource: Resource) -> Limit | None:
        return self.catalog.get(organization.plan_id).limit(resource.key)
