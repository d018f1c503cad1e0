"""The loader's rules and the models' input assumptions are one set.

From the dbt manifest: every error-severity data test on a staging or
intermediate model says why the rows it checks hold, with
``meta: {input_assumption: <rule_id or list>}`` (the loader rule in
``ottp.contract.rules.RULES`` that guarantees its input) and/or
``meta: {model_logic: true}`` (it tests what the model itself computes). And
the quarantine (macros/quarantine.sql, compiled into stg_quarantined_events and
stg_quarantined_titles) holds every input assumption a test names, with the
rule's own reason code and bounds: a row loaded before a rule existed is kept
out of staging instead of failing the build.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess

import pytest

from ottp.config import DBT_PROJECT_DIR, REPO_ROOT, dbt_executable
from ottp.contract import rules as contract
from tests.conftest import dbt_folder_env

LAYERS = ("models/staging/", "models/intermediate/")
# Guarantees of the loader that are not constraints of one line, so not in RULES.
LOADER_GUARANTEES = {
    "event_id.unique": "ottp/ingest/load.py keeps the first received copy of an event_id "
    "(an anti-join against raw.events), so raw.events holds each id once",
}
# Assumptions no loader rule guarantees (the contract is silent on them): the
# quarantine is their only guard, so each must be in it. None today: a new one
# belongs in the schema and the loaders, this is the visible exception.
QUARANTINE_ONLY: dict[str, str] = {}
TITLES_SCHEMA = REPO_ROOT / "ottp" / "contract" / "titles.schema.json"
_ROW = re.compile(
    r"(\d+) as assumption_id,\s*cast\((null|'([^']*)') as \w+\) as staging_model,\s*"
    r"cast\('([^']*)' as \w+\) as rule_id,\s*cast\('([^']*)' as \w+\) as reason_code"
)


def _title_rules() -> dict[str, str]:
    """The catalog contract's constraints the title loaders enforce, by id."""
    schema = json.loads(TITLES_SCHEMA.read_text())
    ids = {f"titles.{f}.required": "missing_field" for f in schema["required"]}
    for field, node in schema["properties"].items():
        if "enum" in node:
            ids[f"titles.{field}.enum"] = "invalid_value"
    for loader_path in ("validate.py", "spark_validate.py"):
        loader = (REPO_ROOT / "ottp" / "ingest" / loader_path).read_text()
        for rule_id in ids:
            field = rule_id.split(".")[1]
            checked = f"j.{field} is null" in loader or f"j.{field} not in" in loader
            assert checked, (loader_path, rule_id)
    # The schema names the categories seed in words; both loaders check a title's
    # category against the seed file (tests/ingest/test_load.py and tests/contract/test_contract.py
    # load a title outside it: invalid_value on DuckDB and on Spark).
    assert "seeds/categories.csv" in schema["properties"]["category"]["description"]
    ids[contract.TITLE_CATEGORY_RULE] = "invalid_value"
    return ids


def test_the_loaders_categories_are_the_seed_the_quarantine_joins():
    """titles.category.seed: the loaders read the seed stg_titles joins (seeds/categories.csv)."""
    assert contract.TITLE_CATEGORY_RULE == "titles.category.seed"
    rows = (REPO_ROOT / "seeds" / "categories.csv").read_text().splitlines()
    assert rows[0].split(",")[0] == "category"
    assert contract.title_categories() == tuple(row.split(",")[0] for row in rows[1:])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, dbt_saved_parse) -> dict:
    """dbt compile of the staging models (their SQL) into a temp target: the manifest."""
    root = tmp_path_factory.mktemp("input_assumptions")
    # in its folder, from the session's saved parse (tests/conftest.py)
    env = dbt_folder_env()
    target = dbt_saved_parse(root / "target")
    cmd = [
        dbt_executable(), "compile", "--select", "path:models/staging,resource_type:model",
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target), "--log-path", str(root / "logs"),
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    return json.loads((target / "manifest.json").read_text())


def _model_path(manifest: dict, unique_id: str) -> str:
    node = manifest["nodes"].get(unique_id)
    return node["original_file_path"] if node else ""


def _error_tests(manifest: dict) -> list[dict]:
    """Error-severity data tests (generic and singular) on staging or intermediate models."""
    tests = []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        if str(node["config"].get("severity", "error")).lower() != "error":
            continue
        parents = [d for d in node["depends_on"]["nodes"] if d.startswith("model.")]
        if any(_model_path(manifest, p).startswith(LAYERS) for p in parents):
            tests.append(node)
    return tests


def _assumptions(meta: dict) -> list[str]:
    value = meta.get("input_assumption") or []
    return [value] if isinstance(value, str) else list(value)


def _quarantine(manifest: dict) -> dict[str, dict[str, str]]:
    """staging model -> {rule_id: reason_code}, as the compiled quarantine views hold them."""
    held: dict[str, dict[str, str]] = {}
    for name in ("stg_quarantined_events", "stg_quarantined_titles"):
        node = next(n for n in manifest["nodes"].values() if n["name"] == name)
        rows = _ROW.findall(node["compiled_code"])
        assert rows, f"no assumption rows in the compiled {name}"
        for _, _, model, rule_id, reason_code in rows:
            held.setdefault(model or "(no model)", {})[rule_id] = reason_code
    return held


def _staging_ancestors(manifest: dict, unique_id: str) -> set[str]:
    """Names of the staging models a node reads, directly or through other models."""
    seen, pending, found = set(), [unique_id], set()
    while pending:
        node = manifest["nodes"].get(pending.pop())
        if node is None:
            continue
        for parent in node["depends_on"]["nodes"]:
            if parent in seen or not parent.startswith("model."):
                continue
            seen.add(parent)
            if _model_path(manifest, parent).startswith("models/staging/"):
                found.add(manifest["nodes"][parent]["name"])
            pending.append(parent)
    return found


def test_every_error_test_says_why_its_input_holds(manifest):
    tests = _error_tests(manifest)
    assert len(tests) >= 50, "the manifest should hold the staging and intermediate tests"
    known = {r.rule_id for r in contract.RULES} | set(_title_rules())
    known |= set(LOADER_GUARANTEES) | set(QUARANTINE_ONLY)
    missing, unknown = [], []
    for test in tests:
        meta = test["config"].get("meta") or {}
        names = _assumptions(meta)
        if not names and meta.get("model_logic") is not True:
            missing.append(test["name"])
        unknown += [f"{test['name']}: {n}" for n in names if n not in known]
    assert not missing, f"error-severity tests without input_assumption or model_logic: {missing}"
    assert not unknown, f"input assumptions that name no loader rule: {unknown}"


def test_the_quarantine_holds_every_input_assumption_a_test_names(manifest):
    held = _quarantine(manifest)
    uncovered = []
    for test in _error_tests(manifest):
        for rule_id in _assumptions(test["config"].get("meta") or {}):
            if rule_id in LOADER_GUARANTEES:
                continue  # a property of the whole table, not of a row
            staging = _staging_ancestors(manifest, test["unique_id"])
            staging |= {
                manifest["nodes"][p]["name"]
                for p in test["depends_on"]["nodes"]
                if _model_path(manifest, p).startswith("models/staging/")
            }
            if not any(rule_id in held.get(model, {}) for model in staging):
                uncovered.append(f"{test['name']}: {rule_id} (reads {sorted(staging)})")
    assert not uncovered, f"input assumptions the quarantine does not hold: {uncovered}"
    for rule_id in QUARANTINE_ONLY:
        assert any(rule_id in rules for rules in held.values()), rule_id


def test_the_quarantine_uses_the_loaders_rules_and_reason_codes(manifest):
    held = _quarantine(manifest)
    titles = _title_rules()
    for model, rules in held.items():
        for rule_id, reason_code in rules.items():
            if rule_id in QUARANTINE_ONLY:
                continue
            if rule_id in titles:
                assert reason_code == titles[rule_id], rule_id
                continue
            assert rule_id in contract.BY_ID, f"{model}: {rule_id} is no loader rule"
            assert reason_code == contract.BY_ID[rule_id].reason_code, rule_id
    # The bounds are the contract's: position_s > 86400 in the filter, as in the schema.
    player = next(n for n in manifest["nodes"].values() if n["name"] == "stg_player_events")
    sql = player["compiled_code"]
    operators = {"minimum": "<", "exclusiveMinimum": "<=", "maximum": ">"}
    bounds = [
        r for r in contract.RULES if r.kind in operators and r.rule_id in held["stg_player_events"]
    ]
    assert {r.field for r in bounds} == {"position_s", "duration_s", "from_position_s"}
    for rule in bounds:
        assert f"{rule.field} {operators[rule.kind]} {rule.value:g}" in sql, rule.rule_id


def test_staging_models_take_the_contracts_event_families(manifest):
    """Each event staging model selects one family of the schema's event_type enum."""
    families = {
        "stg_player_events": "player",
        "stg_navigation_events": "navigation",
        "stg_interest_events": "interest",
        "stg_account_events": "account",
        "stg_survey_responses": "survey",
    }
    for model, family in families.items():
        node = next(n for n in manifest["nodes"].values() if n["name"] == model)
        listed = re.search(r"event_type in \(([^)]*)\)", node["compiled_code"]).group(1)
        assert [v.strip(" '\n") for v in listed.split(",")] == list(contract.FAMILIES[family])


def test_a_test_without_provenance_is_caught(manifest):
    """The check itself: drop the meta of one staging test and it is reported."""
    manifest = copy.deepcopy(manifest)
    tests = _error_tests(manifest)
    victim = next(t for t in tests if t["name"].startswith("not_null_columns_stg_player"))
    victim["config"]["meta"] = {}
    with pytest.raises(AssertionError, match="without input_assumption or model_logic"):
        test_every_error_test_says_why_its_input_holds(manifest)
    victim["config"]["meta"] = {"input_assumption": "position_s.maximum_typo"}
    with pytest.raises(AssertionError, match="name no loader rule"):
        test_every_error_test_says_why_its_input_holds(manifest)
