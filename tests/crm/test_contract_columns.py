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
ROW_HASH_MACRO = config.DBT_PROJECT_DIR / "macros" / "row_hash.sql"
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


def _row_hash_sql(spec, engine: str) -> str:
    """The _row_hash expression the model of ``spec`` compiles to on ``engine``."""
    macro = ROW_HASH_MACRO.read_text()
    block = macro[macro.index("{% macro row_hash() -%}") + 23 : macro.index("{%- endmacro %}")]
    model = _models(EXPORTS_YML)[spec.name]
    columns = {
        c["name"]: {"name": c["name"], "data_type": _render(c["data_type"], engine)}
        for c in model["columns"]
    }
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    text = env.from_string(block).render(model={"columns": columns}, target={"type": engine})
    return " ".join(text.split())


@pytest.mark.parametrize("spec", contract.TABLES, ids=lambda s: s.name)
def test_each_model_computes_the_contracts_row_hash_last(spec):
    assert spec.column_names[-1] == contract.ROW_HASH
    assert [c.name for c in spec.hashed_columns] == spec.column_names[:-1]
    # DuckDB: the very expression the sync's contract defines
    assert _row_hash_sql(spec, "duckdb") == contract.row_hash_sql(spec)
    # every model takes it from the one macro, as its last column
    sql = (EXPORTS_YML.parent / f"{spec.name}.sql").read_text()
    assert sql.count("{{ ottp.row_hash() }} as _row_hash") == 1
    assert sql.rstrip().endswith("select * from hashed")


def test_the_postgres_row_hash_tells_null_empty_and_null_text_apart():
    import psycopg2

    from tests.crm.test_sync import PG, PG_URL

    if not PG:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    spec = contract.TABLES_BY_NAME["crm_similar_titles"]
    expression = _row_hash_sql(spec, "postgres")
    rows = [
        ("t_1", 1, "t_2", None, 0.5),
        ("t_1", 1, "t_2", "", 0.5),
        ("t_1", 1, "t_2", "NULL", 0.5),
        ("t_1", 1, "t_2", "-", 0.5),
        ("t_1", 1, "t_2", "t_2", None),
        ("t_1", 1, "t_2t_2", None, 0.5),
        ("t_1", 1, None, "t_2", 0.5),
        ("t_1", 11, "t_2", None, 0.5),
    ]
    con = psycopg2.connect(PG_URL)
    try:
        with con.cursor() as cur:
            cur.execute(
                "create temp table contracted (title_id text, rank bigint, "
                "similar_title_id text, similar_title_name text, score double precision)"
            )
            cur.executemany("insert into contracted values (%s, %s, %s, %s, %s)", rows)
            cur.execute(f"select {expression} from contracted")
            hashes = [r[0] for r in cur.fetchall()]
    finally:
        con.close()
    assert hashes[0] == hashes[1]  # '' is sent as null
    assert len(set(hashes[1:])) == len(rows) - 1
    assert "xxhash64(" in _row_hash_sql(spec, "spark")
