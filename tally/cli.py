"""The `tally` command: serve, migrate, plans, resources, export-schema, create-org,
stripe-sync, close-periods, prune-events, invoices mark-paid."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from billing import CatalogError, Money
from billing.accounts import AccountError
from billing.closing import ClosingRun, close_all_periods
from billing.invoices import InvoiceService, OverdueInvoices
from billing.models import Invoice
from billing.provider import ProviderError
from core.config import ConfigError, Settings
from core.db import driver_url
from core.errors import DomainError
from core.resources import packaged_path
from limits import PluginError, ResourceRegistry, create_plugin_manager
from limits.event_storage import partition_name
from limits.hookspecs import PROJECT
from limits.retention import Maintained, maintain
from tally.demo.seed import DemoKeys, demo_keys_file, ensure_demo
from tally.http.metrics import MULTIPROCESS_DIR
from tally.logging import log_config
from tally.runtime import Runtime, build_runtime

SCHEMA_FILE = packaged_path("graph", "schema.graphql")
"""The shipped schema (package data of `graph`; the checkout's top-level schema.graphql links
to it): Tally's schema with its built-in resources only."""
DISTRIBUTION = "tally"


class CommandError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tally", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="migrate and serve; with --demo, seed the demo when empty and print its page"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="seed the demo organization into an empty database and print its owner's page "
        "address; its keys are kept in TALLY_DEMO_KEYS_FILE (default: beside the SQLite "
        "database, or ./tally-demo-keys.json) and reused across restarts",
    )
    commands.add_parser("migrate", help="bring the database to the newest schema")
    commands.add_parser("plans", help="list the plans and their limits")
    commands.add_parser("resources", help="list the limited resources and their plugins")
    export = commands.add_parser(
        "export-schema",
        help="write the shipped schema.graphql (built-in resources), or with --output the schema "
        "this deployment serves (installed plugins included)",
    )
    export.add_argument("--check", action="store_true", help="fail when the file is stale")
    export.add_argument("--output", type=Path, default=None, help="'-' for stdout")
    create = commands.add_parser("create-org", help="create an organization; prints JSON")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", required=True, dest="plan_id")
    create.add_argument("--owner-email", default="owner@example.com")
    create.add_argument("--anchor-day", type=int, default=None)
    create.add_argument(
        "--currency", default=None, help="ISO 4217 code; default: the plan's first currency"
    )
    sync = commands.add_parser(
        "stripe-sync",
        help="compare every organization's plan, status and period with Stripe; with --apply "
        "create the missing customers and subscriptions (idempotent)",
    )
    sync.add_argument("--apply", action="store_true")
    commands.add_parser(
        "close-periods",
        help="bill every organization's ended billing periods (idempotent; run it from cron)",
    )
    commands.add_parser(
        "prune-events",
        help="start this month's epoch of raw usage events and remove the epochs older than "
        "TALLY_EVENT_RETENTION_DAYS (idempotent; tally serve runs it hourly, or run it from cron)",
    )
    invoices = commands.add_parser("invoices", help="local invoices")
    invoice_commands = invoices.add_subparsers(dest="invoice_command", required=True)
    mark_paid = invoice_commands.add_parser(
        "mark-paid", help="settle a local invoice paid outside Tally (a transfer)"
    )
    mark_paid.add_argument("number", help="the invoice number, e.g. TAL-2026-000123")
    return parser


def _safe_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{tail}" if ":" in credentials else url


def _connect(runtime: Runtime) -> None:
    """Fail with one clear line when the database cannot be reached (a synchronous probe, so
    no event loop or driver thread outlives a failure)."""
    engine = create_engine(driver_url(runtime.settings.database_url, asynchronous=False))
    try:
        with engine.connect():
            pass
    except (DBAPIError, OSError) as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise CommandError(
            f"cannot reach the database at {_safe_url(runtime.settings.database_url)}: {reason}"
        ) from None
    finally:
        engine.dispose()


def _migrate(runtime: Runtime) -> None:
    from core.migrate import upgrade

    _connect(runtime)
    upgrade(runtime.settings.database_url)


def _serve(runtime: Runtime, args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers < 1:
        raise CommandError("--workers must be at least 1", 2)
    _migrate(runtime)
    keys_file = demo_keys_file(
        runtime.settings.database_url, os.environ.get("TALLY_DEMO_KEYS_FILE")
    )
    demo = asyncio.run(_seed_demo(runtime, keys_file)) if args.demo else None
    base = f"http://{args.host}:{args.port}"
    os.environ.setdefault("TALLY_PUBLIC_URL", base)
    print(f"Tally on {base} (database {_safe_url(runtime.settings.database_url)})")
    if runtime.settings.graphiql:
        print(f"GraphiQL: {base}/graphql")
    for warning in runtime.warnings:
        print(f"warning: {warning}")
    if demo is not None:
        state = "seeded" if demo.created else "keys reused" if demo.reused else "new keys issued"
        print(f"Demo organization {demo.organization_id} ({state}; keys kept in {keys_file}):")
        print(f"  page:        {base}/#key={demo.owner_api_key}")
        print(f"  owner key:   {demo.owner_api_key}")
        print(f"  service key: {demo.service_api_key}")
        print(f'  GraphiQL headers: {{"Authorization": "Bearer {demo.owner_api_key}"}}')
    sys.stdout.flush()
    metrics_dir = _metrics_dir(args.workers)
    try:
        uvicorn.run(
            "tally.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
            log_config=log_config(),
            access_log=False,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


WORKER_HEALTHCHECK_SECONDS = 30
"""How long uvicorn's supervisor waits for a busy worker to answer its health check before it
kills and restarts it (uvicorn's default, 5 s, restarted healthy workers under load)."""


def _metrics_dir(workers: int) -> str | None:
    """With several workers, a fresh directory where each writes its /metrics figures
    (PROMETHEUS_MULTIPROC_DIR, read by the workers at start); the directory to remove after."""
    if workers < 2 or os.environ.get(MULTIPROCESS_DIR):
        return None
    directory = tempfile.mkdtemp(prefix="tally-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    return directory


async def _seed_demo(runtime: Runtime, keys_file: Path) -> DemoKeys | None:
    try:
        return await ensure_demo(runtime, keys_file)
    finally:
        await runtime.db.dispose()


def _plans(runtime: Runtime) -> None:
    keys = [resource.key for resource in runtime.engine.registry]
    for plan in runtime.catalog:
        others = ", ".join(plan.price(code).formatted for code in plan.currencies[1:])
        also = f"; also {others}" if others else ""
        print(f"{plan.id}  {plan.name}  {plan.price_monthly.formatted}/month excl. tax{also}")
        for key in keys:
            limit = plan.limit(key)
            shown = "unlimited" if limit is None or limit.value is None else f"{limit.value:,}"
            policy = f" ({limit.policy.value})" if limit else ""
            print(f"    {key}: {shown}{policy}")
    for topup in runtime.catalog.topups.values():
        prices = ", ".join(price.formatted for price in topup.prices.values())
        print(f"top-up {topup.id}  {topup.name}  {topup.amount:,} {topup.resource}  {prices}")


def _resources(runtime: Runtime) -> None:
    for resource in runtime.engine.registry:
        owner = runtime.engine.registry.owner(resource.key)
        print(
            f"{resource.key}  {resource.kind}  {resource.label} [{resource.unit}]  plugin {owner}"
        )


def builtin_registry() -> ResourceRegistry:
    """The resources of Tally's built-in plugins only: those the `tally` distribution registers
    under its own entry points, not those of a partner installed beside it."""
    try:
        entry_points = distribution(DISTRIBUTION).entry_points.select(group=PROJECT)
    except PackageNotFoundError:
        raise CommandError(f"the {DISTRIBUTION!r} distribution is not installed") from None
    plugins = [(entry_point.load(), entry_point.name) for entry_point in entry_points]
    return ResourceRegistry(create_plugin_manager(plugins, load_entry_points=False))


def schema_text(registry: ResourceRegistry) -> str:
    """The schema served with `registry`'s resources, as schema.graphql holds it."""
    from graph.schema import build_schema

    return build_schema(registry).as_str() + "\n"


def _export_schema(runtime: Runtime, args: argparse.Namespace) -> None:
    if args.output is None:
        target, text = SCHEMA_FILE, schema_text(builtin_registry())
        fix = "run `tally export-schema`"
    else:
        target, text = args.output, schema_text(runtime.engine.registry)
        fix = f"run `tally export-schema --output {target}`"
    if str(target) == "-":
        if args.check:
            raise CommandError("--check needs a file, not '-'", 2)
        sys.stdout.write(text)
    elif args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            raise CommandError(f"{target} is stale: {fix}")
        print(f"{target} is up to date")
    else:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")


def _create_org(runtime: Runtime, args: argparse.Namespace) -> None:
    plan = runtime.catalog.get(args.plan_id)
    if args.currency is not None and not plan.offers(args.currency.strip().upper()):
        offered = ", ".join(plan.currencies)
        raise CommandError(f"plan {plan.id!r} is not offered in {args.currency}; use {offered}", 2)
    _migrate(runtime)

    async def create() -> dict[str, str]:
        try:
            opened = await runtime.accounts.open(
                name=args.name,
                plan_id=args.plan_id,
                owner_email=args.owner_email,
                anchor_day=args.anchor_day,
                currency=args.currency,
            )
        finally:
            await runtime.db.dispose()
        account = opened.account
        created = {
            "organization_id": account.organization.id,
            "owner_api_key": account.owner_api_key,
            "service_api_key": account.service_api_key,
        }
        if opened.provider_error:
            created["warning"] = (
                f"not subscribed at the billing provider ({opened.provider_error}); "
                "run `tally stripe-sync --apply`"
            )
        return created

    print(json.dumps(asyncio.run(create())))


def _stripe_sync(runtime: Runtime, args: argparse.Namespace) -> None:
    from billing.stripe.provider import StripeProvider
    from billing.stripe.sync import SyncLine, stripe_sync

    provider = runtime.provider
    if not isinstance(provider, StripeProvider):
        raise CommandError("stripe-sync needs TALLY_BILLING=stripe", 2)
    _connect(runtime)

    async def sync() -> list[SyncLine]:
        try:
            return await stripe_sync(
                runtime.db, runtime.engine, runtime.catalog, provider, args.apply
            )
        finally:
            await runtime.db.dispose()

    lines = asyncio.run(sync())
    for line in lines:
        print(f"{line.organization_id}  {line.state}  {line.detail}")
    states = Counter(line.state for line in lines)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    print(f"{len(lines)} organization(s): {summary or 'none'}")


def _close_periods(runtime: Runtime) -> int:
    """Close what is due; the number of organizations that failed (the others are closed)."""
    _connect(runtime)

    async def close() -> ClosingRun:
        try:
            return await close_all_periods(
                runtime.db, runtime.engine, runtime.catalog, runtime.provider, runtime.clock.now()
            )
        finally:
            await runtime.db.dispose()

    try:
        run = asyncio.run(close())
    except ProviderError as error:
        raise CommandError(f"billing provider failed: {error.message}") from None
    for item in run.closed:
        period = f"{item.period.start.date()} to {item.period.end.date()}"
        if item.invoice is None:
            billed = (
                "nothing to invoice" if runtime.provider.name == "local" else "billed by Stripe"
            )
        else:
            total = Money(item.invoice.total_minor, item.invoice.currency).formatted
            billed = f"invoice {item.invoice.number} {total}"
        switched = f", now on {item.plan_id}" if item.switched_plan else ""
        print(f"{item.organization_id}  {period}  {billed}{switched}")
    for waiting in run.waiting:
        period = f"{waiting.period.start.date()} to {waiting.period.end.date()}"
        closes_at = waiting.closes_at.isoformat(timespec="seconds")
        print(
            f"{waiting.organization_id}  {period}  left open: late usage counts in it until "
            f"{closes_at} (TALLY_USAGE_GRACE_SECONDS); run close-periods again after that"
        )
    print(f"closed {len(run.closed)} period(s)" if run.closed else "no period to close")
    for failed in run.failed:
        print(f"tally: {failed.organization_id}  not closed: {failed.reason}", file=sys.stderr)
    return len(run.failed)


def _flag_overdue(runtime: Runtime) -> None:
    """The overdue pass that follows close-periods: unpaid local invoices past their due
    date become overdue and start the dunning grace (TALLY_DUNNING_GRACE_DAYS)."""

    async def flag() -> list[OverdueInvoices]:
        grace = timedelta(days=runtime.settings.dunning_grace_days)
        try:
            return await InvoiceService(runtime.db, runtime.clock).flag_overdue(grace)
        finally:
            await runtime.db.dispose()

    for item in asyncio.run(flag()):
        numbers = ", ".join(invoice.number for invoice in item.invoices)
        stops = item.usage_stops_at.isoformat(timespec="seconds") if item.usage_stops_at else "-"
        print(f"{item.organization_id}  overdue: {numbers}; usage stops at {stops} unless paid")


def _prune_events(runtime: Runtime) -> None:
    _connect(runtime)
    retention = timedelta(days=runtime.settings.event_retention_days)

    async def prune() -> Maintained:
        try:
            return await maintain(runtime.db, runtime.clock.now(), retention)
        finally:
            await runtime.db.dispose()

    done = asyncio.run(prune())
    if done.started is not None:
        print(f"started epoch {partition_name(done.started)}: new events are written there")
    for removed in done.removed:
        print(
            f"removed {partition_name(removed.epoch)}: the events recorded from "
            f"{removed.started_at.isoformat(timespec='seconds')} to "
            f"{removed.ended_at.isoformat(timespec='seconds')}"
        )
    oldest = done.kept[0].started_at.isoformat(timespec="seconds")
    print(
        f"{len(done.kept)} epoch(s) kept, events recorded since {oldest} "
        f"(TALLY_EVENT_RETENTION_DAYS={runtime.settings.event_retention_days})"
    )


def _mark_paid(runtime: Runtime, number: str) -> None:
    _connect(runtime)

    async def mark() -> Invoice:
        try:
            return await InvoiceService(runtime.db, runtime.clock).mark_paid_by_number(number)
        finally:
            await runtime.db.dispose()

    try:
        invoice = asyncio.run(mark())
    except DomainError as error:
        raise CommandError(error.message) from None
    paid_at = invoice.paid_at.isoformat(timespec="seconds") if invoice.paid_at else "-"
    print(f"{invoice.number}  {invoice.status}  (paid at {paid_at})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        runtime = build_runtime(Settings.from_env())

        if args.command == "serve":
            _serve(runtime, args)
        elif args.command == "migrate":
            _migrate(runtime)
            print("database is up to date")
        elif args.command == "plans":
            _plans(runtime)
        elif args.command == "resources":
            _resources(runtime)
        elif args.command == "export-schema":
            _export_schema(runtime, args)
        elif args.command == "create-org":
            _create_org(runtime, args)
        elif args.command == "stripe-sync":
            _stripe_sync(runtime, args)
        elif args.command == "close-periods":
            failed = _close_periods(runtime)
            _flag_overdue(runtime)
            if failed:
                raise CommandError(f"{failed} organization(s) could not be closed; see above")
        elif args.command == "prune-events":
            _prune_events(runtime)
        elif args.command == "invoices":
            _mark_paid(runtime, args.number)
    except (CatalogError, AccountError, ConfigError) as error:
        print(f"tally: {error}", file=sys.stderr)
        return 2
    except PluginError as error:
        print(f"tally: plugin error: {error}", file=sys.stderr)
        return 1
    except CommandError as error:
        print(f"tally: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
