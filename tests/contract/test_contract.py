"""The JSON Schema, the loaders' rules and the simulator agree on the event contract.

The central test walks ``events.schema.json`` itself (not ``ottp.contract.rules``),
and for every constraint in it builds a line that breaks that constraint alone
(jsonschema confirms it), then checks the DuckDB loader rejects the line with
the reason code the constraint calls for; a second test checks the Spark loader
gives every line the same verdict. A constraint added to the schema that the
loaders do not enforce fails these tests.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import re
import uuid
from datetime import datetime

import duckdb
import jsonschema
import pytest

from ottp import config
from ottp.contract import rules
from ottp.ingest import landing, load
from tests.conftest import make_title, write_landing

EVENTS_SCHEMA = json.loads((config.CONTRACT_DIR / "events.schema.json").read_text())
TITLES_SCHEMA = json.loads((config.CONTRACT_DIR / "titles.schema.json").read_text())
FORMATS = jsonschema.FormatChecker()
RFC3339 = r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value) -> bool:
    """RFC 3339 date-time (jsonschema checks it only with an optional package installed)."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(RFC3339, value):
        return False
    datetime.fromisoformat(value.replace("z", "Z"))
    return True


VALIDATOR = jsonschema.Draft202012Validator(EVENTS_SCHEMA, format_checker=FORMATS)
TITLES_VALIDATOR = jsonschema.Draft202012Validator(TITLES_SCHEMA, format_checker=FORMATS)

# What breaking each kind of constraint must be rejected as: written here, from
# the contract's wording (docs/event-contract.md), not read from the loader.
EXPECTED_CODE = {
    "required": "missing_field",
    "type": "wrong_type",
    "format": "wrong_type",
    "enum": "invalid_value",
    "pattern": "invalid_value",
    "minimum": "invalid_value",
    "exclusiveMinimum": "invalid_value",
    "maximum": "invalid_value",
    "items": "wrong_type",
}
OWN_CODE = {
    ("event_type", "enum"): "unknown_event_type",
    ("schema_version", "pattern"): "unsupported_schema_version",
}
ANNOTATIONS = {"description", "title", "$schema", "$id"}
# One value of each JSON type, to put where another type is required.
SAMPLES = {
    "string": "4",
    "number": 4.5,
    "integer": 4,
    "boolean": True,
    "object": {"a": 1},
    "array": [1],
}


# ---------------------------------------------------------------- the schema's constraints


def _types(node: dict) -> set[str]:
    t = node.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def schema_constraints(schema: dict) -> list[dict]:
    """Every constraint of the events schema: where it is, on which field, for which types."""
    found = []

    def walk_object(node, path, prefix, event_types):
        for name in node.get("required", []):
            found.append(dict(path=path + ("required",), field=prefix + (name,),
                              keyword="required", value=True, event_types=event_types))  # fmt: skip
        for name, sub in node.get("properties", {}).items():
            required = name in node.get("required", [])
            walk_field(sub, path + ("properties", name), prefix + (name,), event_types, required)

    def walk_field(node, path, field, event_types, required):
        for keyword, value in node.items():
            if keyword in ANNOTATIONS:
                continue
            if keyword in ("properties", "required"):
                continue  # nested fields: below
            if keyword not in EXPECTED_CODE:
                pytest.fail(f"no test breaks {keyword!r} at {'/'.join(map(str, path))}")
            found.append(dict(path=path + (keyword,), field=field, keyword=keyword,
                              value=value, event_types=event_types,
                              types=_types(node), required=required))  # fmt: skip
        if "properties" in node or "required" in node:
            for name in node.get("required", []):
                found.append(dict(path=path + ("required",), field=field + (name,),
                                  keyword="required", value=True,
                                  event_types=event_types))  # fmt: skip
            for name, sub in node.get("properties", {}).items():
                walk_field(sub, path + ("properties", name), field + (name,), event_types,
                           name in node.get("required", []))  # fmt: skip

    unknown = set(schema) - ANNOTATIONS - {"type", "required", "properties", "allOf",
                                           "additionalProperties"}  # fmt: skip
    assert not unknown, f"no test for top-level keywords {unknown}"
    walk_object(schema, (), (), None)
    for i, branch in enumerate(schema.get("allOf", [])):
        selector = branch["if"]["properties"]["event_type"]
        types = tuple(selector["enum"]) if "enum" in selector else (selector["const"],)
        assert set(branch["then"]) <= {"required", "properties"}, branch["then"]
        walk_object(branch["then"], ("allOf", i, "then"), (), types)
    return found


# ---------------------------------------------------------------- valid events, one per type


def base_event(event_type: str) -> dict:
    """A valid event of ``event_type`` with every field its type requires."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": "1.0",
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "received_at": "2026-08-01T10:00:01.000Z",
        "user_id": "u_000001",
        "device_id": "d_0000001",
        "platform": "web",
        "app_version": "5.2.0",
        "country": "FR",
        "properties": None,
    }
    if event_type in rules.FAMILIES["player"]:
        event.update(playback_id="p_1", title_id="t_00001", position_s=60.0, duration_s=5400.0)
    if event_type == "seek":
        event["from_position_s"] = 30.0
    if event_type in ("title_click", *rules.FAMILIES["interest"]):
        event["title_id"] = "t_00001"
    event["properties"] = {
        "rating": {"rating": 4},
        "consent_update": {"marketing_opt_in": False},
        "survey_response": {"survey_id": "nps", "question_id": "score", "answer": "9"},
        "page_view": {"page": "home"},
        "rail_impression": {"rail": "trending", "title_ids": ["t_00001", "t_00002"]},
        "title_click": {"rail": "trending", "rank": 2},
        "search": {"query": "space"},
    }.get(event_type)
    return event


EVENT_TYPES = EVENTS_SCHEMA["properties"]["event_type"]["enum"]


def _get_parent(event: dict, field: tuple[str, ...]) -> dict:
    node = event
    for part in field[:-1]:
        node = node[part]
    return node


def _mutations(c: dict) -> list[tuple[object, str]]:
    """(new value or a deletion marker, expected reason code) that break constraint ``c``."""
    code = OWN_CODE.get((c["field"][-1], c["keyword"]), EXPECTED_CODE[c["keyword"]])
    keyword, value = c["keyword"], c["value"]
    if keyword == "required":
        return [(DELETE, code), (None, code)]
    if keyword == "type":
        allowed = {value} if isinstance(value, str) else set(value)
        out = [(SAMPLES[t], code) for t in SAMPLES if t not in allowed
               and not (t == "integer" and "number" in allowed)]  # fmt: skip
        if "null" not in allowed:
            # required means non-null; elsewhere a null is just the wrong type
            out.append((None, "missing_field" if c["required"] else code))
        if allowed == {"boolean"}:
            out += [("yes", code), ("true", code), (1, code)]  # never coerced
        if allowed == {"integer"}:
            out += [(4.0 + 0.5, code), ("4", code)]
        return out
    if keyword == "format":
        bad = {"uuid": "not-a-uuid", "date-time": "last tuesday", "date": "2026-13-45"}
        return [(bad[value], code)]
    if keyword == "items":
        assert value == {"type": "string"}, f"teach this test to break items {value}"
        return [([1], code), (["a", 2], code), (["a", None], code), ([["a"]], code)]
    if keyword == "enum":
        return [("zz_not_in_the_enum", code)]
    if keyword == "pattern":
        bad = [s for s in ("fr", "2.0", "x", "", "FRA") if not re.search(value, s)]
        return [(s, code) for s in bad[:2]]
    if keyword == "minimum":
        return [(value - 1, code)]
    if keyword == "exclusiveMinimum":
        return [(value, code), (value - 1, code)]
    if keyword == "maximum":
        # 1e308 is an integer to JSON Schema, not to the loaders (no fraction or exponent)
        return [(value + 1, code)] + ([(1e308, code)] if "integer" not in c["types"] else [])
    raise AssertionError(keyword)


DELETE = object()


def _break(c: dict, new_value, validator, bases) -> dict | None:
    """A valid record with constraint ``c`` broken alone by ``new_value`` (None if impossible).

    ``bases`` gives a fresh valid record per event type (None: any record).
    """
    for event_type in c["event_types"] or [None]:
        for record in bases(event_type):
            parent = _get_parent(record, c["field"])
            if new_value is DELETE:
                parent.pop(c["field"][-1], None)
            else:
                parent[c["field"][-1]] = copy.deepcopy(new_value)
            errors = list(validator.iter_errors(record))
            paths = {tuple(e.absolute_schema_path) for e in errors}
            if new_value is None and c["keyword"] in ("required", "type"):
                # null breaks the non-null type that goes with required: the same field only
                if errors and {tuple(e.absolute_path) for e in errors} == {c["field"]}:
                    return record
            elif paths and all(p[: len(c["path"])] == c["path"] for p in paths):
                return record  # (an items error lies under items/...)
    return None


def _event_bases(event_type):
    for t in [event_type] if event_type else ["page_view", *EVENT_TYPES]:
        yield base_event(t)


def _title_bases(_):
    yield make_title(title_id=f"t_{uuid.uuid4().hex[:8]}")
    yield make_title(title_id=f"t_{uuid.uuid4().hex[:8]}", kind="episode", series_id="s_0001",
                     season=1, episode=2)  # fmt: skip


def hostile_cases(schema=EVENTS_SCHEMA) -> list[dict]:
    """One record per way to break each constraint of the schema, with its expected code."""
    titles = schema is TITLES_SCHEMA
    validator = TITLES_VALIDATOR if titles else VALIDATOR
    bases = _title_bases if titles else _event_bases
    cases = []
    for c in schema_constraints(schema):
        isolated = 0
        for new_value, code in _mutations(c):
            record = _break(c, new_value, validator, bases)
            if record is None:
                continue
            isolated += 1
            shown = "absent" if new_value is DELETE else json.dumps(new_value)
            where = "/".join(map(str, c["path"]))
            label = f"{schema['$id']}: {where} [{'.'.join(c['field'])}] <- {shown}"
            cases.append(dict(constraint=c, event=record, code=code, label=label))
        assert isolated, f"no line breaks {c['path']} alone: teach this test how"
    return cases


# Lines found at the door, loaded before the schema rules were enforced.
def regression_lines() -> list[tuple[str, dict, str]]:
    heartbeat = base_event("heartbeat")
    return [
        ("country-lowercase", {**base_event("page_view"), "country": "fr"}, "invalid_value"),
        ("opt-in-yes", {**base_event("consent_update"),
                        "properties": {"marketing_opt_in": "yes"}}, "wrong_type"),
        ("opt-in-one", {**base_event("consent_update"),
                        "properties": {"marketing_opt_in": 1}}, "wrong_type"),
        ("question-null", {**base_event("survey_response"), "properties": {
            "survey_id": "nps", "question_id": None, "answer": "9"}}, "missing_field"),
        ("survey-no-answer", {**base_event("survey_response"), "properties": {
            "survey_id": "nps", "question_id": "score"}}, "missing_field"),
        ("heartbeat-1e308", {**heartbeat, "position_s": 1e308, "duration_s": 1e308},
         "invalid_value"),
        ("rating-4.5", {**base_event("rating"), "properties": {"rating": 4.5}}, "wrong_type"),
        ("rating-text", {**base_event("rating"), "properties": {"rating": "4"}}, "wrong_type"),
        ("rating-4.0", {**base_event("rating"), "properties": {"rating": 4.0}}, "wrong_type"),
        # staging casts rank to a 32-bit integer: a text, a fraction or a huge
        # number is the loader's to reject, not a cast error in dbt
        ("rank-text", {**base_event("title_click"),
                       "properties": {"rail": "trending", "rank": "abc"}}, "wrong_type"),
        ("rank-2.5", {**base_event("title_click"),
                      "properties": {"rail": "trending", "rank": 2.5}}, "wrong_type"),
        ("rank-zero", {**base_event("title_click"),
                       "properties": {"rail": "trending", "rank": 0}}, "invalid_value"),
        ("rank-huge", {**base_event("title_click"),
                       "properties": {"rail": "trending", "rank": 12345678901}}, "invalid_value"),
        # RFC 3339 date-times only: DuckDB's cast reads a date alone as midnight
        ("occurred-date-only", {**base_event("page_view"), "occurred_at": "2026-08-01"},
         "wrong_type"),
        ("received-no-offset", {**base_event("page_view"),
                                "received_at": "2026-08-01T10:00:01"}, "wrong_type"),
        ("occurred-space", {**base_event("page_view"),
                            "occurred_at": "2026-08-01 10:00:00Z"}, "wrong_type"),
        ("page-view-rank-huge", {**base_event("page_view"),
                                 "properties": {"page": "home", "rank": 12345678901}},
         "invalid_value"),
    ]  # fmt: skip


# ---------------------------------------------------------------- loading them


def _all_lines() -> dict:
    """The landing lines of each kind, the expected code and a label per line, the cases."""
    lines = {"events": [], "catalog": []}
    expected, labels = {}, {}

    def add(kind, record, code, label):
        line = json.dumps(record)
        lines[kind].append(line)
        expected[line], labels[line] = code, label

    cases = hostile_cases() + hostile_cases(TITLES_SCHEMA)
    for case in cases:
        kind = "catalog" if case["label"].startswith(TITLES_SCHEMA["$id"]) else "events"
        add(kind, case["event"], case["code"], case["label"])
    for name, event, code in regression_lines():
        add("events", {**event, "event_id": str(uuid.uuid4())}, code, name)
    # the schema names the categories seed in words only; the loaders read the seed
    add("catalog", make_title(title_id="t_cooking", category="cooking"), "invalid_value",
        "category outside seeds/categories.csv")  # fmt: skip
    for event_type in EVENT_TYPES:
        add("events", base_event(event_type), None, f"valid {event_type}")
    for title in _title_bases(None):
        add("catalog", title, None, f"valid {title['kind']}")
    return dict(lines=lines, expected=expected, labels=labels, cases=cases)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract_hostile")
    built = _all_lines()
    for kind, lines in built["lines"].items():
        name = "titles.ndjson.gz" if kind == "catalog" else "part-00000.ndjson.gz"
        write_landing(root / "landing", lines, kind=kind, name=name)
    report = load.load_landing(root / "warehouse.duckdb", root / "landing")
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select raw_line, reason_code, reason from raw.rejected_events union all "
            "select raw_line, reason_code, reason from raw.rejected_titles"
        ).fetchall()
    finally:
        con.close()
    return dict(
        root=root,
        lines=[line for kind in built["lines"].values() for line in kind],
        expected=built["expected"],
        labels=built["labels"],
        cases=built["cases"],
        report=report,
        got={line: code for line, code, _ in rows},
        reasons={line: reason for line, _, reason in rows},
    )


def test_every_valid_base_event_validates():
    for event_type in EVENT_TYPES:
        errors = list(VALIDATOR.iter_errors(base_event(event_type)))
        assert not errors, (event_type, errors[0].message)


def test_every_schema_constraint_is_enforced_by_the_duckdb_loader(hostile):
    assert hostile["report"].reconciles
    wrong = []
    for line in hostile["lines"]:
        want, got = hostile["expected"][line], hostile["got"].get(line)
        if want != got:
            wrong.append(f"{hostile['labels'][line]}: expected {want}, got {got}")
    assert not wrong, "\n".join(wrong)
    # the reason names the field concerned
    for case in hostile["cases"]:
        line = json.dumps(case["event"])
        assert case["constraint"]["field"][-1] in hostile["reasons"][line], case["label"]


def test_the_rules_cover_exactly_the_schema_constraints():
    """RULES (what the loaders run) state every constraint of the schema, and nothing else."""
    from_schema = {(c["path"], ".".join(c["field"])) for c in schema_constraints(EVENTS_SCHEMA)}
    from_rules = {(path, r.field) for r in rules.RULES for path in r.schema_paths}
    assert from_rules == from_schema
    ids = [r.rule_id for r in rules.RULES]
    assert len(ids) == len(set(ids))
    assert {r.reason_code for r in rules.RULES} <= set(load.REJECT_REASONS)


def test_a_constraint_the_loaders_do_not_know_fails_loudly():
    schema = copy.deepcopy(EVENTS_SCHEMA)
    schema["properties"]["country"]["maxLength"] = 2
    with pytest.raises(rules.ContractError, match="maxLength"):
        rules.derive(schema)
    schema = copy.deepcopy(EVENTS_SCHEMA)
    schema["allOf"][-1]["then"]["properties"]["properties"]["properties"]["answer"]["format"] = (
        "email"
    )
    with pytest.raises(rules.ContractError, match="email"):
        rules.derive(schema)
    # a branch that does not type the properties object cannot require a field in it:
    # the loaders would reject a null object JSON Schema accepts
    schema = copy.deepcopy(EVENTS_SCHEMA)
    rank_branch = next(b for b in schema["allOf"] if "title_click" in str(b["if"])
                       and "rank" in str(b["then"]))  # fmt: skip
    rank_branch["then"]["properties"]["properties"]["required"] = ["rank"]
    with pytest.raises(rules.ContractError, match="need the object typed"):
        rules.derive(schema)


def test_a_new_bound_in_the_schema_becomes_a_rule():
    schema = copy.deepcopy(EVENTS_SCHEMA)
    schema["allOf"][4]["then"]["properties"]["properties"]["properties"]["rating"]["maximum"] = 10
    schema["properties"]["title_id"]["pattern"] = "^t_"
    derived = {r.rule_id: r for r in rules.derive(schema)}
    assert derived["properties.rating.maximum"].value == 10
    assert derived["title_id.pattern"].reason_code == "invalid_value"


def test_the_spark_loader_gives_every_hostile_line_the_same_verdict(hostile, spark_steps):
    spark_steps.reset()
    out = spark_steps.spark_load(["--landing", str(hostile["root"] / "landing"), "--json"])
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["reconciles"]
    raw = spark_steps.warehouse / "raw.db"
    got = {}
    for table in ("rejected_events", "rejected_titles"):
        got |= dict(
            duckdb.sql(
                f"select raw_line, reason_code from read_parquet('{raw / table}/**/*.parquet', "
                "hive_partitioning = true)"
            ).fetchall()
        )
    differ = [
        f"{hostile['labels'][line]}: DuckDB {hostile['got'].get(line)}, Spark {got.get(line)}"
        for line in hostile["lines"]
        if got.get(line) != hostile["got"].get(line)
    ]
    assert not differ, "\n".join(differ)
    assert report["rejected_by_reason"] == hostile["report"].to_dict()["rejected_by_reason"]


def test_schemas_are_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(EVENTS_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(TITLES_SCHEMA)


def test_loader_enumerations_match_the_schema():
    props = EVENTS_SCHEMA["properties"]
    assert tuple(props["event_type"]["enum"]) == load.ALL_EVENT_TYPES
    assert tuple(props["platform"]["enum"]) == load.PLATFORMS
    assert tuple(t for family in load.EVENT_TYPES.values() for t in family) == load.ALL_EVENT_TYPES
    assert set(EVENTS_SCHEMA["required"]) == {
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "received_at",
        "device_id",
        "platform",
    }


@pytest.fixture(scope="module")
def clean_landing(tmp_path_factory):
    from ottp.simulator import simulate

    out = tmp_path_factory.mktemp("contract") / "landing"
    simulate(out, users=60, titles=60, days=4, seed=11, dirty_rate=0.0)
    return out


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_simulated_events_validate_against_the_schema(clean_landing):
    files = [f.path for f in landing.discover(clean_landing) if f.kind == "events"]
    events = [e for path in files for e in _lines(path)]
    seen_types = {e["event_type"] for e in events}
    # Every family shows up in a small run.
    assert {"page_view", "play_start", "heartbeat", "complete", "like", "signup"} <= seen_types
    random.Random(0).shuffle(events)
    for event in events[:3000]:
        errors = sorted(VALIDATOR.iter_errors(event), key=str)
        assert not errors, f"{event}: {errors[0].message}"
    # the bounds added for the models hold on every simulated event, not just a sample
    for field in ("position_s", "duration_s", "from_position_s"):
        top = max((e.get(field) or 0) for e in events)
        assert top <= EVENTS_SCHEMA["properties"][field]["maximum"], field
    # every title_click carries an integer rank the rank rules accept
    ranks = [e["properties"]["rank"] for e in events if e["event_type"] == "title_click"]
    assert ranks and all(type(r) is int for r in ranks)
    low = rules.BY_ID["properties.rank.minimum"].value
    high = rules.BY_ID["properties.rank.maximum"].value
    assert low <= min(ranks) and max(ranks) <= high
    assert "title_click" in rules.BY_ID["properties.rank.type"].event_types


def test_simulated_titles_validate_against_the_schema(clean_landing):
    validator = jsonschema.Draft202012Validator(TITLES_SCHEMA)
    files = [f.path for f in landing.discover(clean_landing) if f.kind == "catalog"]
    titles = [t for path in files for t in _lines(path)]
    assert titles
    categories = (config.SEEDS_DIR / "categories.csv").read_text().splitlines()[1:]
    known = {row.split(",")[0] for row in categories}
    for title in titles:
        errors = list(validator.iter_errors(title))
        assert not errors, f"{title}: {errors[0].message}"
        assert title["category"] in known


def test_the_docs_list_every_rule_with_its_reason_code():
    """docs/event-contract.md states the rules as the loaders run them."""
    doc = (config.REPO_ROOT / "docs" / "event-contract.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_.A-Z]+)` \|.*\| `([a-z_]+)` \|$", doc, re.MULTILINE))
    assert rows == {r.rule_id: r.reason_code for r in rules.RULES}
    for r in rules.RULES:
        if r.kind in ("minimum", "exclusiveMinimum", "maximum"):
            assert f"{r.value}" in doc


# Values that hostile or buggy clients send: wrong JSON types, strings that look
# like other types, bounds and their neighbours, control characters.
FUZZ_VALUES = [
    None, "", "yes", "true", "12", "1e2", "FR", "fr", " FR", "FR\n", "FRA", "é", "x" * 300,
    "2026-08-01T10:00:00Z", "2026-08-01", "not-a-date", "1.0", "2.0", "web", "WEB", "heartbeat",
    0, 1, -1, 3, 5, 6, 1.5, 4.0, 1e2, 1e-9, -0.0, 86400, 86400.5, 86401, 1000, 1001,
    2**31, 2**63, 1e308, True, False, [], [None], [1, 2], {}, {"a": 1},
]  # fmt: skip
FUZZ_FIELDS = [
    *EVENTS_SCHEMA["properties"],
    *(f"properties.{k}" for k in ("rating", "marketing_opt_in", "survey_id", "question_id",
                                  "answer", "rank", "rail")),
]  # fmt: skip
# The loader's readings stricter than JSON Schema (docs/event-contract.md): a
# JSON integer literal for integers, and timestamps within the plausible range.
STRICTER_READINGS = ("is not an integer", "timestamp_out_of_range")


def _stricter_reading(reason: str, event: dict) -> bool:
    if any(r in reason for r in STRICTER_READINGS):
        return True
    # Python's re (the reference validator's) lets "$" match before a final
    # newline; JSON Schema's ECMA-262 patterns and the loaders do not.
    values = [*event.values(), *(event.get("properties") or {}).values()]
    return "does not match" in reason and any(
        isinstance(v, str) and v.endswith("\n") for v in values
    )


def _fuzzed_events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        event = base_event(rng.choice(EVENT_TYPES))
        for _ in range(rng.choice((1, 1, 2, 3))):
            field, value = rng.choice(FUZZ_FIELDS), rng.choice(FUZZ_VALUES)
            if field == "event_id":
                continue
            parent, key = event, field
            if field.startswith("properties."):
                if not isinstance(event.get("properties"), dict):
                    event["properties"] = {}
                parent, key = event["properties"], field.split(".", 1)[1]
            if rng.random() < 0.15:
                parent.pop(key, None)
            else:
                parent[key] = value
        events.append(event)
    return events


def test_random_hostile_lines_load_only_when_the_reference_validator_accepts_them(tmp_path):
    """A differential test against jsonschema: whatever the loader accepts is valid
    under the schema, and what it rejects that the schema accepts is rejected only
    for one of its documented stricter readings."""
    events = _fuzzed_events(3000, seed=16)
    write_landing(tmp_path / "landing", [json.dumps(e) for e in events])
    report = load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing")
    assert report.reconciles and report.lines_in == len(events)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        accepted = {str(r[0]) for r in con.execute("select event_id from raw.events").fetchall()}
        reasons = {
            json.loads(line)["event_id"]: reason
            for line, reason in con.execute(
                "select raw_line, reason from raw.rejected_events"
            ).fetchall()
        }
    finally:
        con.close()
    assert len(accepted) + len(reasons) == len(events)
    accepted_invalid, rejected_valid = [], []
    for event in events:
        errors = list(VALIDATOR.iter_errors(event))
        if event["event_id"] in accepted and errors:
            accepted_invalid.append((errors[0].message, event))
        reason = reasons.get(event["event_id"])
        if reason is not None and not errors and not _stricter_reading(reason, event):
            rejected_valid.append((reason, event))
    assert 500 < len(accepted) < len(events) - 500  # both verdicts well exercised
    assert not accepted_invalid, accepted_invalid[:3]
    assert not rejected_valid, rejected_valid[:3]
