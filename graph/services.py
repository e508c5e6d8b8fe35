"""What the GraphQL layer is handed: the services it calls, as an interface of its own.

`tally.runtime.Runtime` provides it; graph never imports the product above it.
"""

from __future__ import annotations

from typing import Protocol

from billing import Catalog
from billing.links import InvoiceLinks
from billing.services import AccountService, BillingService
from billing.spend_cap import SpendCapService
from billing.topups import TopUpService
from core.db import Database
from limits import LimitEngine
from limits.service import UsageService


class Services(Protocol):
    """The services resolvers call, and what the request's DataLoaders read through."""

    @property
    def db(self) -> Database: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def engine(self) -> LimitEngine: ...
    @property
    def links(self) -> InvoiceLinks: ...
    @property
    def usage(self) -> UsageService: ...
    @property
    def accounts(self) -> AccountService: ...
    @property
    def billing(self) -> BillingService: ...
    @property
    def topups(self) -> TopUpService: ...
    @property
    def spend_caps(self) -> SpendCapService: ...
