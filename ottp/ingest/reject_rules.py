"""The contract's rules as SQL CASE branches, one generator for both raw loaders.

Each rule of ``ottp.contract.rules`` becomes ``when <broken> then '<code>|<reason>'``
here; the DuckDB loader (``ottp.ingest.load``) and the Spark loader
(``ottp.ingest.spark_load``) splice the same branches, in ``RULES``' order, into
their validation query. What differs between the engines (string literals,
JSON access, regex matching, the names of JSON types) is a :class:`Dialect`,
so a rule is written once and both engines give the same verdict.

The branches read the columns the loaders' ``typed`` CTE defines: ``j`` (the
text parse), ``event_type``, the typed top-level fields (a number as a double,
NaN if not a number; ``properties`` as its JSON text, or null if not an
object, with ``properties_not_object``) and ``not_a_string``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ottp.contract import rules as contract_rules
from ottp.contract.rules import ContractError, Rule

# Fields whose format is checked by parsing them in ``typed`` (null: unparsable).
FORMAT_COLUMNS = {("event_id", "uuid"), ("occurred_at", "date-time"), ("received_at", "date-time")}
BOUND_OPS = {"minimum": "<", "exclusiveMinimum": "<=", "maximum": ">"}
# The text fields' type rules are one branch: ``not_a_string`` names the first
# text field holding another JSON type.
NOT_A_STRING_BRANCH = (
    "when not_a_string is not null then 'wrong_type|' || not_a_string || ' is not a string'"
)


@dataclass(frozen=True)
class Dialect:
    """How one engine spells what a rule checks; templates take ``{f}``, ``{path}``, ``{value}``.

    ``nested_*`` read a field of ``properties`` at the JSON path ``{path}`` (a
    literal): its JSON type name (``absent_type`` when missing or null), its text,
    its number. ``json_types`` maps each JSON Schema type to the engine's names.
    """

    name: str
    literal: Callable[[str], str]
    # The offending value as a JSON string, cut to 50 characters.
    json_quoted: str
    nested_type: str
    nested_text: str
    nested_number: str
    absent_type: str
    json_types: Mapping[str, tuple[str, ...]]
    not_matching: str  # {value} does not match the regex literal {pattern}
    not_a_number: str  # the typed double {f} (from the text j.{f}) is no finite number
    title_not_an_integer: str  # catalog field {f} is no JSON integer that fits 32 bits
    # Top-level text fields read from another column than j.<field>.
    text_columns: Mapping[str, str] = field(default_factory=dict)
    # Whether an event-type guard on a top-level rule is an AND (else a CASE).
    guard_with_and: bool = False


def duckdb_literal(text: str) -> str:
    """A DuckDB string literal (quotes doubled, backslashes plain)."""
    return "'" + text.replace("'", "''") + "'"


def spark_literal(text: str) -> str:
    """A Spark SQL string literal (backslashes are escapes there)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


DUCKDB = Dialect(
    name="DuckDB",
    literal=duckdb_literal,
    json_quoted="to_json(left({value}, 50))",
    nested_type="json_type(properties, {path})",
    nested_text="json_extract_string(properties, {path})",
    nested_number="try_cast(json_extract_string(properties, {path}) as double)",
    absent_type="NULL",
    json_types={
        "string": ("VARCHAR",),
        "number": ("UBIGINT", "BIGINT", "DOUBLE"),
        "integer": ("UBIGINT", "BIGINT"),
        "boolean": ("BOOLEAN",),
        "object": ("OBJECT",),
    },
    not_matching="not regexp_matches({value}, {pattern})",
    not_a_number="isnan({f}) or isinf({f})",
    title_not_an_integer=(
        "json_type(j.{f}) not in ('UBIGINT', 'BIGINT') "
        "or (j.{f} is not null and try_cast(j.{f}::varchar as integer) is null)"
    ),
    # schema_version is read as JSON and unwrapped (see load._parsed_lines)
    text_columns={"schema_version": "schema_version_text"},
    guard_with_and=True,
)

SPARK = Dialect(
    name="Spark",
    literal=spark_literal,
    # to_json of a one-element array, brackets cut: DuckDB's to_json of a string
    json_quoted="regexp_extract(to_json(array(left({value}, 50))), '^\\\\[(.*)\\\\]$', 1)",
    nested_type=(
        "regexp_extract(schema_of_variant(variant_get(try_parse_json(properties), {path})), "
        "'^[A-Z]+', 0)"
    ),
    nested_text="get_json_object(properties, {path})",
    nested_number="cast(get_json_object(properties, {path}) as double)",
    absent_type="VOID",
    # schema_of_variant's names, up to the first non-letter
    json_types={
        "string": ("STRING",),
        "number": ("BIGINT", "DECIMAL", "DOUBLE", "FLOAT"),
        "integer": ("BIGINT",),
        "boolean": ("BOOLEAN",),
        "object": ("OBJECT",),
    },
    not_matching="not {value} rlike {pattern}",
    not_a_number=(
        "(j.{f} is not null and {f} is null) or isnan({f}) "
        "or {f} in (double('inf'), double('-inf'))"
    ),
    title_not_an_integer=(
        "schema_of_variant(variant_get(try_parse_json(line), '$.{f}')) not in ('BIGINT', 'VOID') "
        "or (j.{f} is not null and {f} is null)"
    ),
)


def verdict_sql(dialect: Dialect, rule: Rule, value_sql: str | None = None) -> str:
    """``'<code>|<reason>'``, with the offending value (JSON-quoted, cut short) for ``{value}``."""
    head, marker, tail = rule.reason.partition("{value}")
    verdict = dialect.literal(f"{rule.reason_code}|{head}")
    if marker:
        quoted = dialect.json_quoted.format(value=value_sql)
        verdict += f" || {quoted} || {dialect.literal(tail)}"
    return verdict


def _nested_check(dialect: Dialect, rule: Rule) -> tuple[str, str]:
    """(condition, offending value) of a rule on a field of ``properties``."""
    if rule.parent != "properties":
        raise ContractError(f"{rule.rule_id}: nested only under properties")
    path = dialect.literal(f"$.{rule.name}")
    json_type = dialect.nested_type.format(path=path)
    value = dialect.nested_text.format(path=path)
    if rule.kind == "required":
        return f"coalesce({json_type}, '{dialect.absent_type}') = '{dialect.absent_type}'", value
    if rule.kind == "type":
        names = contract_rules.in_sql(n for t in rule.value for n in dialect.json_types[t])
        return f"{json_type} not in ({names})", value
    if rule.kind in BOUND_OPS:
        number = dialect.nested_number.format(path=path)
        return f"{number} {BOUND_OPS[rule.kind]} {rule.value!r}", value
    if rule.kind == "enum":
        return f"{value} not in ({contract_rules.in_sql(rule.value)})", value
    if rule.kind == "pattern":
        pattern = dialect.literal(rule.value)
        return dialect.not_matching.format(value=value, pattern=pattern), value
    raise ContractError(f"{rule.rule_id}: no {dialect.name} check")


def _top_level_check(dialect: Dialect, rule: Rule) -> tuple[str, str]:
    """(condition, offending value) of a rule on a top-level field."""
    f = rule.field
    top_type = contract_rules.BY_ID.get(f"{f}.type")
    kind = top_type.value[0] if top_type is not None else None
    # A number is the typed double (NaN if not a number), properties the
    # object or null; text is the text parse's value.
    value = f if kind in ("number", "object") else dialect.text_columns.get(f, f"j.{f}")
    if rule.kind == "required":
        return (f"j.{f} is null" if kind == "string" else f"{value} is null"), value
    if rule.kind == "type" and kind == "number":
        return dialect.not_a_number.format(f=f), value
    if rule.kind == "type" and kind == "object":
        return f"{f}_not_object", value
    if rule.kind == "format" and (f, rule.value) in FORMAT_COLUMNS:
        return f"{f} is null", value
    if rule.kind == "enum":
        return f"{value} not in ({contract_rules.in_sql(rule.value)})", value
    if rule.kind == "pattern":
        pattern = dialect.literal(rule.value)
        return dialect.not_matching.format(value=value, pattern=pattern), value
    if rule.kind in BOUND_OPS and kind == "number":
        return f"{value} {BOUND_OPS[rule.kind]} {rule.value!r}", value
    raise ContractError(f"{rule.rule_id}: no {dialect.name} check")


def _is_text_type(rule: Rule) -> bool:
    return rule.kind == "type" and rule.parent is None and rule.value == ("string",)


def event_rule_branch(dialect: Dialect, rule: Rule) -> str:
    """The CASE branch enforcing one rule on a line of ``typed``."""
    if _is_text_type(rule):
        raise ContractError(f"{rule.rule_id}: text types are one branch, NOT_A_STRING_BRANCH")
    nested = rule.parent is not None
    cond, value = _nested_check(dialect, rule) if nested else _top_level_check(dialect, rule)
    verdict = verdict_sql(dialect, rule, value if rule.kind in ("enum", "pattern") else None)
    if rule.event_types is not None:
        types = contract_rules.in_sql(rule.event_types)
        if dialect.guard_with_and and not nested:
            cond = f"event_type in ({types}) and ({cond})"
        else:
            # case, not and: a nested field's JSON is read only on lines of those types
            cond = f"case when event_type in ({types}) then {cond} end"
    return f"when {cond} then {verdict}"


def event_rule_branches(dialect: Dialect) -> list[str]:
    """The CASE branches of every contract rule, in RULES' order.

    The text fields' type rules are the one ``NOT_A_STRING_BRANCH``, where the
    first of them stands.
    """
    branches = []
    text_types_done = False
    for rule in contract_rules.RULES:
        if _is_text_type(rule):
            if not text_types_done:
                branches.append(NOT_A_STRING_BRANCH)
                text_types_done = True
            continue
        branches.append(event_rule_branch(dialect, rule))
    return branches


def title_integer_branches(dialect: Dialect) -> list[str]:
    """Catalog integers (titles.schema.json): JSON integers that fit 32 bits, then minimums."""
    checks = [
        f"when {dialect.title_not_an_integer.format(f=f)} then 'wrong_type|{f} is not an integer'"
        for f in contract_rules.TITLE_INTEGERS
    ]
    checks += [
        f"when {f} < {low} then 'invalid_value|{f} below {low}'"
        for f, low in contract_rules.TITLE_INTEGERS.items()
        if low is not None
    ]
    return checks
