"""The composition root: settings, database, clock, plans, the limit engine and billing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from billing import Catalog, PlanLimits
from billing.invoicing import Invoicer
from billing.links import InvoiceLinks
from billing.local.documents import Party
from billing.local.provider import LocalProvider
from billing.plan_change import PlanChanger
from billing.provider import BillingProvider
from billing.services import AccountService, BillingService
from billing.spend_cap import SpendCapService
from billing.stripe.events import HANDLERS, same_second
from billing.tax import TaxError, TaxTable
from billing.topups import TopUpService, check_topups
from billing.webhooks import EventContext, ObjectSource, Webhooks
from core.auth import Authenticator
from core.clock import Clock, SystemClock
from core.config import ConfigError, Settings
from core.db import Database
from limits import LimitEngine, create_plugin_manager
from limits.pricing import PriceTable
from limits.service import UsageService

log = logging.getLogger("tally")
log.addHandler(logging.NullHandler())
DEFAULT_SELLER_NAME = "Tally"


@dataclass
class Runtime:
    """Everything a request or a command needs, built once per process."""

    settings: Settings
    db: Database
    clock: Clock
    catalog: Catalog
    engine: LimitEngine
    taxes: TaxTable
    provider: BillingProvider
    plan_changes: PlanChanger
    links: InvoiceLinks
    webhooks: Webhooks
    usage: UsageService
    accounts: AccountService
    billing: BillingService
    topups: TopUpService
    spend_caps: SpendCapService
    authenticator: Authenticator
    warnings: tuple[str, ...] = ()


def seller_of(settings: Settings) -> Party:
    """The seller printed on invoices, from TALLY_SELLER_*."""
    return Party(
        name=settings.seller_name or DEFAULT_SELLER_NAME,
        address_lines=settings.seller_address,
        country=settings.seller_country,
        vat_id=settings.seller_vat_id,
        email=settings.seller_email,
        legal_form=settings.seller_legal_form,
        registration=settings.seller_registration,
    )


def check_seller_identity(settings: Settings, strict: bool = True) -> str | None:
    """Invoices must name the seller: a warning naming what is missing, or None; a
    ConfigError instead when `strict` and the settings bill real customers through Stripe
    (TALLY_BILLING=stripe, not a demo: TALLY_DEMO=1 or the default SQLite database)."""
    missing = settings.missing_seller_identity()
    if not missing:
        return None
    message = f"the seller's identity printed on invoices is incomplete: set {', '.join(missing)}"
    if strict and settings.billing == "stripe" and not settings.demo:
        raise ConfigError(f"{message} (required with TALLY_BILLING=stripe outside the demo)")
    return message


def build_provider(
    settings: Settings, catalog: Catalog, engine: LimitEngine, taxes: TaxTable
) -> BillingProvider:
    """The billing provider TALLY_BILLING names: local (default) or stripe."""
    if settings.billing == "stripe":
        from billing.stripe.provider import StripeProvider

        if not settings.stripe_api_key:
            raise ConfigError("TALLY_BILLING=stripe needs STRIPE_API_KEY")
        return StripeProvider(
            settings.stripe_api_key, catalog, engine, api_base=settings.stripe_api_base
        )
    return LocalProvider(invoicer_of(settings, taxes, engine.clock), catalog, engine)


def invoicer_of(settings: Settings, taxes: TaxTable, clock: Clock) -> Invoicer:
    """The local invoicer: the seller, its numbering prefix and payment terms."""
    return Invoicer(
        taxes,
        seller_of(settings),
        clock,
        prefix=settings.invoice_prefix,
        payment_terms=timedelta(days=settings.payment_terms_days),
    )


def build_runtime(
    settings: Settings,
    clock: Clock | None = None,
    plugins: Iterable[tuple[object, str]] = (),
    provider: BillingProvider | None = None,
) -> Runtime:
    """Load plugins, plans and tax rates and check that they agree; fails fast with a clear
    error. `plugins` are (plugin, name) pairs registered beside the installed ones
    (embedding, tests); `provider` replaces the one the settings name."""
    catalog = Catalog.load(settings.plans_path)
    manager = create_plugin_manager([(PlanLimits(catalog), "billing"), *plugins])
    clock = clock or SystemClock()
    engine = LimitEngine(
        manager,
        clock,
        PriceTable.load(settings.model_prices_path),
        timedelta(seconds=settings.usage_grace_seconds),
    )
    catalog.check_resources(resource.key for resource in engine.registry)
    check_topups(catalog, engine.registry)
    try:
        taxes = TaxTable.load(settings.tax_rates_path)
        taxes.rate(settings.seller_country)
    except TaxError as error:
        raise ConfigError(f"tax rates (TALLY_TAX_RATES, TALLY_SELLER_COUNTRY): {error}") from None
    warning = check_seller_identity(settings, strict=provider is None)
    if warning is not None:
        log.warning("%s; invoices issued now lack them", warning)
    provider = provider or build_provider(settings, catalog, engine, taxes)
    db = Database(settings.database_url)
    plan_changes = PlanChanger(catalog, engine, provider)
    return Runtime(
        settings=settings,
        db=db,
        clock=clock,
        catalog=catalog,
        engine=engine,
        taxes=taxes,
        provider=provider,
        plan_changes=plan_changes,
        links=InvoiceLinks(db, clock, settings.secret_key, settings.public_url),
        webhooks=Webhooks(
            db,
            EventContext(
                catalog,
                clock,
                timedelta(days=settings.dunning_grace_days),
                provider if isinstance(provider, ObjectSource) else None,
            ),
            settings.stripe_webhook_secret,
            HANDLERS,
            same_second,
        ),
        usage=UsageService(db, engine),
        accounts=AccountService(db, engine, catalog, provider),
        billing=BillingService(db, clock, catalog, engine, plan_changes, provider),
        topups=TopUpService(db, clock, catalog, provider, engine.registry),
        spend_caps=SpendCapService(db, catalog, engine),
        authenticator=Authenticator(db, clock, settings.auth_cache_seconds),
        warnings=(warning,) if warning else (),
    )
