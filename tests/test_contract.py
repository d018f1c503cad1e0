"""The JSON Schema, the loader's rules and the simulator agree on the event contract."""

from __future__ import annotations

import gzip
import json
import random

import jsonschema
import pytest

from ottp import config, landing, load

EVENTS_SCHEMA = json.loads((config.CONTRACT_DIR / "events.schema.json").read_text())
TITLES_SCHEMA = json.loads((config.CONTRACT_DIR / "titles.schema.json").read_text())


def test_schemas_are_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(EVENTS_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(TITLES_SCHEMA)


def test_loader_enumerations_match_the_schema():
    props = EVENTS_SCHEMA["properties"]
    assert tuple(props["event_type"]["enum"]) == load.ALL_EVENT_TYPES
    assert tuple(props["platform"]["enum"]) == load.PLATFORMS
    assert set(EVENTS_SCHEMA["required"]) == {
        "event_id", "event_type", "schema_version", "occurred_at", "received_at",
        "device_id", "platform",
    }


@pytest.fixture(scope="module")
def clean_landing(tmp_path_factory):
    from ottp.simulate import simulate

    out = tmp_path_factory.mktemp("contract") / "landing"
    simulate(out, users=60, titles=60, days=4, seed=11, dirty_rate=0.0)
    return out


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_simulated_events_validate_against_the_schema(clean_landing):
    validator = jsonschema.Draft202012Validator(EVENTS_SCHEMA)
    files = [f.path for f in landing.discover(clean_landing) if f.kind == "events"]
    events = [e for path in files for e in _lines(path)]
    seen_types = {e["event_type"] for e in events}
    # Every family shows up in a small run.
    assert {"page_view", "play_start", "heartbeat", "complete", "like", "signup"} <= seen_types
    random.Random(0).shuffle(events)
    for event in events[:3000]:
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, f"{event}: {errors[0].message}"


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
