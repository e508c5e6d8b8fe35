"""The `tally` command: serve, migrate, plans, resources, export-schema, create-org,
close-periods."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from billing import CatalogError, Money
from billing.accounts import AccountError, open_account
from billing.closing import ClosedPeriod, close_all_periods
from billing.provider import ProviderError
from core.config import ConfigError, Settings
from core.db import driver_url
from core.resources import packaged_path
from limits import PluginError, ResourceRegistry, create_plugin_manager
from limits.hookspecs import PROJECT
from tally.demo.seed import DemoKeys, ensure_demo
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
    serve = commands.add_parser("serve", help="migrate, seed the demo when empty, and serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
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
    commands.add_parser(
        "close-periods",
        help="bill every organization's ended billing periods (idempotent; run it from cron)",
    )
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
    demo = asyncio.run(_seed_demo(runtime))
    base = f"http://{args.host}:{args.port}"
    print(f"Tally on {base} (database {_safe_url(runtime.settings.database_url)})")
    print(f"GraphiQL: {base}/graphql")
    if demo is not None:
        state = "seeded" if demo.created else "fresh keys issued"
        print(f"Demo organization {demo.organization_id} ({state}):")
        print(f"  owner key:   {demo.owner_api_key}")
        print(f"  service key: {demo.service_api_key}")
        print(f'  GraphiQL headers: {{"Authorization": "Bearer {demo.owner_api_key}"}}')
    sys.stdout.flush()
    uvicorn.run(
        "tally.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )


async def _seed_demo(runtime: Runtime) -> DemoKeys | None:
    try:
        return await ensure_demo(runtime)
    finally:
        await runtime.db.dispose()


def _plans(runtime: Runtime) -> None:
    keys = [resource.key for resource in runtime.engine.registry]
    for plan in runtime.catalog:
        print(f"{plan.id}  {plan.name}  {plan.price_monthly.formatted}/month excl. tax")
        for key in keys:
            limit = plan.limit(key)
            shown = "unlimited" if limit is None or limit.value is None else f"{limit.value:,}"
            policy = f" ({limit.policy.value})" if limit else ""
            print(f"    {key}: {shown}{policy}")


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
    runtime.catalog.get(args.plan_id)
    _migrate(runtime)

    async def create() -> dict[str, str]:
        try:
            async with runtime.db.write() as session:
                account = await open_account(
                    session,
                    runtime.engine,
                    runtime.catalog,
                    name=args.name,
                    plan_id=args.plan_id,
                    owner_email=args.owner_email,
                    anchor_day=args.anchor_day,
                )
        finally:
            await runtime.db.dispose()
        return {
            "organization_id": account.organization.id,
            "owner_api_key": account.owner_api_key,
            "service_api_key": account.service_api_key,
        }

    print(json.dumps(asyncio.run(create())))


def _close_periods(runtime: Runtime) -> None:
    _connect(runtime)

    async def close() -> list[ClosedPeriod]:
        try:
            return await close_all_periods(
                runtime.db, runtime.engine, runtime.catalog, runtime.provider, runtime.clock.now()
            )
        finally:
            await runtime.db.dispose()

    try:
        closed = asyncio.run(close())
    except ProviderError as error:
        raise CommandError(f"billing provider failed: {error.message}") from None
    for item in closed:
        period = f"{item.period.start.date()} to {item.period.end.date()}"
        if item.invoice is None:
            billed = "billed by the provider"
        else:
            total = Money(item.invoice.total_minor, item.invoice.currency).formatted
            billed = f"invoice {item.invoice.number} {total}"
        switched = f", now on {item.plan_id}" if item.switched_plan else ""
        print(f"{item.organization_id}  {period}  {billed}{switched}")
    print(f"closed {len(closed)} period(s)" if closed else "no period to close")


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
        elif args.command == "close-periods":
            _close_periods(runtime)
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
