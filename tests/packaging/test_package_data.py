"""Package data read with importlib.resources, and the shipped schema: built-in resources only."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.catalog import BUILTIN_PLANS, Catalog, CatalogError
from billing.tax import BUILTIN_TAX_RATES, TaxTable
from core.config import Settings
from core.resources import load_toml, packaged
from limits.pricing import BUILTIN_PRICES, PriceTable
from tally.cli import SCHEMA_FILE, builtin_registry, main, schema_text
from tally.runtime import build_runtime

PARTNER = Path(__file__).parents[1] / "plugins" / "partner"


def test_the_builtin_tables_are_package_resources() -> None:
    assert packaged("billing", "plans.toml") == BUILTIN_PLANS
    assert packaged("billing", "tax_rates.toml") == BUILTIN_TAX_RATES
    assert packaged("limits", "model_prices.toml") == BUILTIN_PRICES
    assert len(Catalog.load()) and len(TaxTable.load()) and "gpt-4o" in PriceTable.load()
    assert packaged("graph", "schema.graphql") == SCHEMA_FILE


def test_a_toml_file_that_cannot_be_read_or_parsed_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(CatalogError, match=rf"^cannot read plans file {missing}: "):
        load_toml(missing, BUILTIN_PLANS, "plans file", CatalogError)
    broken = tmp_path / "broken.toml"
    broken.write_text("[plans\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=rf"^plans file {broken} is not valid TOML: "):
        Catalog.load(broken)
    document = load_toml(None, BUILTIN_PLANS, "plans file", CatalogError)
    assert document.source == str(BUILTIN_PLANS) and "plans" in document.data


def test_the_shipped_schema_leaves_out_an_installed_partner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(PARTNER))
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    builtin = builtin_registry()
    assert {resource.key for resource in builtin} == {"tokens", "documents", "agents", "seats"}
    deployment = build_runtime(Settings.from_env()).engine.registry
    assert "voice_minutes" in deployment
    assert "voiceMinutes" in schema_text(deployment)
    assert "voiceMinutes" not in schema_text(builtin)

    assert main(["export-schema", "--check"]) == 0
    assert capsys.readouterr().out == f"{SCHEMA_FILE} is up to date\n"
    served = tmp_path / "served.graphql"
    assert main(["export-schema", "--output", str(served)]) == 0
    assert "voiceMinutes" in served.read_text(encoding="utf-8")
    assert main(["export-schema", "--check", "--output", str(served)]) == 0
