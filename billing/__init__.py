"""Plans, subscriptions, invoices; a plugin of the limit engine for plan limits."""

from billing.catalog import Catalog, CatalogError, Plan
from billing.limits_plugin import PlanLimits
from billing.money import Money

__all__ = ["Catalog", "CatalogError", "Money", "Plan", "PlanLimits"]
