"""The event contract's rules, derived from ``events.schema.json``.

The schema is the one source of truth: this module walks it (the top-level
``properties`` and ``required``, and every ``allOf`` if/then branch with its
nested ``properties``) and turns each constraint into a :class:`Rule`. Both
raw loaders (``ottp.ingest.load`` on DuckDB, ``ottp.ingest.spark_load`` on Spark) generate
their validation from ``RULES``, in ``RULES``' order: the first rule a line
breaks gives its ``reason_code``.

Two readings are stricter than plain JSON Schema, on purpose:

- a required field must also be non-null (``missing_field`` either way); the
  schema says the same with a non-null ``type`` wherever it can;
- ``integer`` means a JSON number written without a fraction or exponent
  (``4``, not ``4.0``): what the models cast to an integer.

A keyword this module does not know raises ``ContractError`` at import: a
constraint added to the schema cannot go unenforced by the loaders.

The catalog's category rule (``titles.schema.json`` names the seed in words)
is :func:`title_categories`: the seed file itself, read at load time.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ottp import config

SCHEMA_PATH = Path(__file__).with_name("events.schema.json")

# The event_type enum grouped by family: the models read one family each.
# Checked against the schema's enum below (same values, same order).
FAMILIES = {
    "navigation": ("page_view", "rail_impression", "title_click", "search"),
    "player": ("play_start", "heartbeat", "pause", "resume", "seek", "complete", "stop"),
    "interest": ("like", "dislike", "rating", "add_to_watchlist", "share"),
    "account": (
        "signup",
        "subscribe",
        "cancel",
        "reactivate",
        "consent_update",
        "deletion_request",
    ),
    "survey": ("survey_response",),
}

# Keywords that constrain nothing (annotations) and those this module turns into rules.
_ANNOTATIONS = {"$schema", "$id", "title", "description"}
_NODE_KEYWORDS = {"type", "properties", "required", "allOf", "additionalProperties"}
_FIELD_KEYWORDS = {"type", "enum", "pattern", "format", "minimum", "exclusiveMinimum",
                   "maximum", "properties", "required"}  # fmt: skip
_FORMATS = {"uuid": "a uuid", "date-time": "a timestamp"}
# JSON Schema's date-time is RFC 3339: a date alone, or a time without an
# offset, is not one, although DuckDB's and Spark's casts would read it. Both
# loaders match this (RE2 and Java alike) before parsing.
DATE_TIME_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # date
    r"[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"  # time
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"  # offset
)
_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "an object",
}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Reason codes whose field has a code of its own instead of invalid_value.
_OWN_CODES = {
    ("event_type", "enum"): "unknown_event_type",
    ("schema_version", "pattern"): "unsupported_schema_version",
}


class ContractError(ValueError):
    """The schema holds a constraint the loaders cannot enforce yet."""


@dataclass(frozen=True)
class Rule:
    """One constraint of the schema as the loaders enforce it.

    ``field`` is a path: ``country`` or ``properties.rating``. ``event_types``
    is None when the rule applies to every event. ``value`` is the
    constraint: the allowed JSON types (tuple, "null" left out), the enum
    values (tuple), the regex, the format name or the bound. ``reason`` is the
    text after ``<reason_code>: ``; ``{value}`` in it stands for the offending
    value, quoted. ``schema_paths`` say where the schema states it.
    """

    rule_id: str
    field: str
    kind: str  # required | type | format | enum | pattern | minimum | exclusiveMinimum | maximum
    value: object
    event_types: tuple[str, ...] | None
    reason_code: str
    reason: str
    schema_paths: tuple[tuple[str | int, ...], ...]

    @property
    def parent(self) -> str | None:
        """``properties`` for a nested field, else None."""
        return self.field.split(".")[0] if "." in self.field else None

    @property
    def name(self) -> str:
        """The field's own name (``rating`` for ``properties.rating``)."""
        return self.field.rsplit(".", 1)[-1]


def _types(node: dict) -> tuple[str, ...]:
    t = node.get("type", ())
    return (t,) if isinstance(t, str) else tuple(t)


def _check_keywords(node: dict, allowed: set[str], where: str) -> None:
    unknown = set(node) - allowed - _ANNOTATIONS
    if unknown:
        raise ContractError(f"{where}: no loader rule for keyword(s) {sorted(unknown)}")


def _event_types_of(condition: dict, where: str) -> tuple[str, ...]:
    """The event types an ``if`` selects: ``properties.event_type`` with ``enum`` or ``const``."""
    props = condition.get("properties", {})
    if set(condition) != {"properties"} or set(props) != {"event_type"}:
        raise ContractError(f"{where}: an if must select on event_type only")
    selector = props["event_type"]
    if set(selector) == {"const"}:
        return (selector["const"],)
    if set(selector) == {"enum"}:
        return tuple(selector["enum"])
    raise ContractError(f"{where}: an if selects event_type with enum or const")


class _Collector:
    def __init__(self, top: dict):
        self.top = top
        self.rules: dict[str, dict] = {}

    def add(self, field, kind, value, event_types, path, reason_code=None, reason=None):
        """Record a rule; the same (field, kind, value) in several branches is one rule."""
        rule_id = f"{field}.{kind}"
        code = reason_code or _OWN_CODES.get((field, kind), "invalid_value")
        if rule_id in self.rules:
            known = self.rules[rule_id]
            if known["value"] != value:
                raise ContractError(f"{rule_id} holds two different values")
            if known["event_types"] is None or event_types is None:
                known["event_types"] = None
            else:
                known["event_types"] = tuple(dict.fromkeys(known["event_types"] + event_types))
            known["schema_paths"].append(path)
            return
        self.rules[rule_id] = dict(
            rule_id=rule_id, field=field, kind=kind, value=value, event_types=event_types,
            reason_code=code, reason=reason, schema_paths=[path],
        )  # fmt: skip

    def field(self, name, node, event_types, path, parent_node, top_level):
        """The rules of one field's schema node."""
        where = "/".join(map(str, path))
        _check_keywords(node, _FIELD_KEYWORDS, where)
        if not _NAME.match(name.rsplit(".", 1)[-1]):
            raise ContractError(f"{where}: field names are lowercase identifiers")
        types = _types(node)
        if types:
            if not set(types) <= set(_TYPE_WORDS) | {"null"}:
                raise ContractError(f"{where}: no loader rule for type {types}")
            allowed = tuple(t for t in types if t != "null")
            outer = _types(parent_node) if parent_node is not None else ()
            outer_allowed = tuple(t for t in outer if t != "null")
            if parent_node is not None and allowed == outer_allowed:
                # A conditional branch narrowing a nullable field to non-null:
                # that is what required means here, so it must be required too.
                required_here = name.rsplit(".", 1)[-1] in self._required_in(path)
                if not required_here:
                    raise ContractError(f"{where}: a non-null type without required")
                self.add(name, "required", True, event_types, path + ("type",),
                         "missing_field", name)  # fmt: skip
            elif parent_node is not None and outer_allowed:
                raise ContractError(f"{where}: a branch changes the type of {name}")
            else:
                words = " or ".join(_TYPE_WORDS[t] for t in allowed)
                self.add(name, "type", allowed, event_types, path + ("type",),
                         "wrong_type", f"{name} is not {words}")  # fmt: skip
        if "format" in node:
            fmt = node["format"]
            if fmt not in _FORMATS:
                raise ContractError(f"{where}: no loader rule for format {fmt!r}")
            self.add(name, "format", fmt, event_types, path + ("format",),
                     "wrong_type", f"{name} is not {_FORMATS[fmt]}")  # fmt: skip
        if "enum" in node:
            values = tuple(node["enum"])
            known = "a known event type" if name == "event_type" else "one of " + ", ".join(values)
            self.add(name, "enum", values, event_types, path + ("enum",),
                     reason=f"{name} {{value}} is not {known}")  # fmt: skip
        if "pattern" in node:
            self.add(name, "pattern", node["pattern"], event_types, path + ("pattern",),
                     reason=f"{name} {{value}} does not match {node['pattern']}")  # fmt: skip
        for kind, words in (("minimum", "below"), ("exclusiveMinimum", "not above"),
                            ("maximum", "above")):  # fmt: skip
            if kind in node:
                bound = node[kind]
                self.add(name, kind, bound, event_types, path + (kind,),
                         reason=f"{name} {words} {bound:g}")  # fmt: skip
        if "properties" in node or "required" in node:
            # A branch may constrain the nested fields of a nullable object
            # without typing it again: they apply when it is an object. Its
            # required fields then need the object required (typed) too.
            untyped_branch = not types and parent_node is not None
            if untyped_branch and "required" in node:
                raise ContractError(f"{where}: nested required fields need the object typed")
            object_types = _types(parent_node) if untyped_branch else types
            if not top_level or "object" not in object_types:
                raise ContractError(f"{where}: nested fields only one level down, in an object")
            self.node(node, event_types, path, prefix=name + ".")

    def _required_in(self, field_path: tuple) -> list[str]:
        # field_path ends with ("properties", <name>); its node's required list
        # sits two levels up, in the node that holds those properties.
        node = self.top
        for step in field_path[:-2]:
            node = node[step]
        return node.get("required", [])

    def node(self, node, event_types, path, prefix=""):
        """Rules of an object node: its required fields and its properties."""
        for name in node.get("required", []):
            full = prefix + name
            self.add(full, "required", True, event_types, path + ("required",),
                     "missing_field", full)  # fmt: skip
        for name, sub in node.get("properties", {}).items():
            parent = self._outer(prefix + name) if event_types is not None else None
            self.field(prefix + name, sub, event_types, path + ("properties", name), parent,
                       top_level=prefix == "")  # fmt: skip

    def _outer(self, full: str) -> dict:
        """The top-level node of a field a conditional branch constrains again."""
        node = self.top
        parts = full.split(".")
        for i, part in enumerate(parts):
            props = node.get("properties", {})
            if part not in props:
                if i == 0:
                    raise ContractError(f"{full}: a branch names a field the schema lacks")
                return {}
            node = props[part]
        return node


def _order(rule: dict) -> tuple:
    """The order the loaders check rules in: whole-line facts first, then per type."""
    nested = "." in rule["field"]
    kind = rule["kind"]
    if nested:
        steps = ("required", "type", "enum", "pattern")
        return (9, "", steps.index(kind) if kind in steps else len(steps))
    if kind == "type" and rule["value"] == ("string",):
        group = 0  # one check for every text field
    elif kind == "required" and rule["event_types"] is None:
        group = 1
    elif kind in ("format", "type") and rule["value"] not in (("number",), ("integer",)):
        group = 2
    elif rule["reason_code"] == "unsupported_schema_version":
        group = 3
    elif rule["reason_code"] == "unknown_event_type":
        group = 4
    elif kind in ("enum", "pattern"):
        group = 5
    elif kind == "type":
        group = 6
    elif kind == "required":
        group = 7
    else:
        group = 8
    return (group, "", 0)


def derive(schema: dict) -> tuple[Rule, ...]:
    """Every constraint of the events schema as a rule, in checking order."""
    _check_keywords(schema, _NODE_KEYWORDS | {"type"}, "schema")
    if schema.get("type") != "object" or schema.get("additionalProperties", True) is not True:
        raise ContractError("schema: an event is an object that may carry extra fields")
    collector = _Collector(schema)
    collector.node(schema, None, ())
    for i, branch in enumerate(schema.get("allOf", [])):
        where = f"allOf/{i}"
        if set(branch) != {"if", "then"}:
            raise ContractError(f"{where}: branches are if/then")
        event_types = _event_types_of(branch["if"], where)
        _check_keywords(branch["then"], {"properties", "required"}, where + "/then")
        collector.node(branch["then"], event_types, ("allOf", i, "then"))
    ordered = sorted(collector.rules.values(), key=_order)  # stable: schema order within a group
    return tuple(
        Rule(**{**r, "schema_paths": tuple(tuple(p) for p in r["schema_paths"])}) for r in ordered
    )


SCHEMA = json.loads(SCHEMA_PATH.read_text())
RULES: tuple[Rule, ...] = derive(SCHEMA)
BY_ID = {r.rule_id: r for r in RULES}
ALL_EVENT_TYPES: tuple[str, ...] = BY_ID["event_type.enum"].value
PLATFORMS: tuple[str, ...] = BY_ID["platform.enum"].value
if tuple(t for family in FAMILIES.values() for t in family) != ALL_EVENT_TYPES:
    raise ContractError("FAMILIES must list the schema's event_type enum, in its order")

TITLES_SCHEMA = json.loads(SCHEMA_PATH.with_name("titles.schema.json").read_text())
# Catalog fields that are JSON integers (or null), with their minimum (None: none).
TITLE_INTEGERS = {
    f: node.get("minimum")
    for f, node in TITLES_SCHEMA["properties"].items()
    if "integer" in _types(node)
}


# The catalog rule the schema states in words only ("one of seeds/categories.csv"):
# both title loaders check it against the seed file itself, read at load time.
TITLE_CATEGORY_RULE = "titles.category.seed"
CATEGORIES_SEED = "categories.csv"


def title_categories() -> tuple[str, ...]:
    """The categories a catalog title may have: ``category`` of seeds/categories.csv, read now."""
    path = config.SEEDS_DIR / CATEGORIES_SEED
    with open(path, newline="", encoding="utf-8") as handle:
        categories = tuple(row["category"] for row in csv.DictReader(handle) if row["category"])
    if not categories:
        raise ContractError(f"{path}: no categories, every title would be rejected")
    return categories


def top_level_fields(json_type: str) -> tuple[str, ...]:
    """Top-level fields whose only allowed JSON type (besides null) is ``json_type``."""
    return tuple(
        r.field for r in RULES if r.kind == "type" and r.parent is None and r.value == (json_type,)
    )


def in_sql(values) -> str:
    """A SQL list of string literals; the values come from the schema, quotes doubled."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
