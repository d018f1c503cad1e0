"""One source for the CRM export contract: the dbt models' enforced contracts, their
allowed values and the quality gates all equal ``ottp.crm.contract``, which the sync reads."""

from __future__ import annotations

import ast
from datetime import datetime

import duckdb
import jinja2
import pytest
import yaml

from ottp import config
from ottp.crm import contract, suites

EXPORTS_YML = config.DBT_PROJECT_DIR / "models" / "exports" / "_exports__models.yml"
AUDIENCE_YML = config.DBT_PROJECT_DIR / "models" / "marts" / "audience" / "_audience__models.yml"
ENGINES = ("duckdb", "postgres", "spark")
# Spark spells two of the contract's types its own way.
SPARK_TYPES = {"text": "string", "integer": "bigint", "double": "double"}


def _project_vars() -> dict:
    project = yaml.safe_load((config.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return project["vars"]


def _render(value, engine: str = "duckdb"):
    """A yml value as dbt renders it for ``engine`` (target.type and var() only)."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    text = (
        jinja2.Environment()
        .from_string(value)
        .render(target={"type": engine}, var=_project_vars().__getitem__)
    )
    return ast.literal_eval(text) if text.startswith("[") else text


def _models(path) -> dict[str, dict]:
    return {m["name"]: m for m in yaml.safe_load(path.read_text())["models"]}


def _accepted_values(model: dict) -> dict[str, list]:
    out = {}
    for column in model["columns"]:
        for test in column.get("data_tests", []):
            if isinstance(test, dict) and "accepted_values" in test:
                out[column["name"]] = _render(test["accepted_values"]["arguments"]["values"])
    return out


def _duckdb_type(sql_type: str) -> str:
    return str(duckdb.sql(f"select cast(null as {sql_type}) as x").types[0])


@pytest.mark.parametrize("spec", contract.TABLES, ids=lambda s: s.name)
def test_each_synced_model_enforces_the_contract_columns_in_order(spec):
    model = _models(EXPORTS_YML)[spec.name]
    assert model["config"]["contract"]["enforced"] is True
    assert [c["name"] for c in model["columns"]] == spec.column_names
    assert (EXPORTS_YML.parent / f"{spec.name}.sql").exists()


@pytest.mark.parametrize("spec", contract.TABLES, ids=lambda s: s.name)
def test_each_synced_models_types_are_the_contract_types_on_every_engine(spec):
    columns = {c["name"]: c["data_type"] for c in _models(EXPORTS_YML)[spec.name]["columns"]}
    for column in spec.columns:
        types = {engine: _render(columns[column.name], engine) for engine in ENGINES}
        crm = contract.SQL_TYPES[column.type]
        # DuckDB: the type the sync stages the column as (text and varchar are one type)
        assert _duckdb_type(types["duckdb"]) == _duckdb_type(crm[contract.DUCKDB]), column
        assert types["postgres"] == crm[contract.POSTGRESQL], column
        assert types["spark"] == SPARK_TYPES.get(column.type, column.type), column


def test_only_the_synced_models_and_the_trigger_ledger_are_exports():
    assert set(_models(EXPORTS_YML)) == {t.name for t in contract.TABLES} | {"crm_trigger_log"}


def test_the_exports_allowed_values_are_the_contracts():
    models = _models(EXPORTS_YML)
    declared = {
        (table, column): values
        for table in contract.TABLES_BY_NAME
        for column, values in _accepted_values(models[table]).items()
    }
    assert declared == contract.ACCEPTED_VALUES


def test_the_lifecycle_stages_are_one_list_in_dbt_and_python():
    project = _project_vars()
    assert project["lifecycle_stages"] == contract.LIFECYCLE_STAGES
    assert project["segments"] == contract.SEGMENTS
    assert project["subscription_statuses"] == contract.SUBSCRIPTION_STATUSES
    lifecycle = _accepted_values(_models(AUDIENCE_YML)["user_lifecycle"])
    assert lifecycle["lifecycle_stage"] == contract.LIFECYCLE_STAGES


def test_the_gates_check_the_contracts_allowed_values():
    now = datetime(2026, 1, 1)
    expectations = [
        e
        for table in ("crm_contacts", "crm_triggers")
        for e in suites.suite_expectations(table, suites.Limits(), None, now)
    ]
    columns = {column for _, column in contract.ACCEPTED_VALUES}
    value_sets = {
        e.column: list(e.value_set)
        for e in expectations
        if type(e).__name__ == "ExpectColumnValuesToBeInSet" and e.column in columns
    }
    assert value_sets == {column: v for (_, column), v in contract.ACCEPTED_VALUES.items()}
