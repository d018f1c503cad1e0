"""Parsing and validating landing lines in Spark SQL: the verdict of every line.

The Spark counterpart of ``ottp.ingest.validate``, with the same verdicts:
``validated_events_sql`` and ``validated_titles_sql`` read the temp view
``_spark_lines`` (file, landing day, line number, line) and give each line the
first reason it fails, or null. The contract's rules come from
``ottp.ingest.reject_rules`` (its SPARK dialect); the line-level checks and
the catalog's own checks are here, in the DuckDB loader's order.
"""

from __future__ import annotations

from collections.abc import Sequence

from ottp.contract import rules as contract_rules
from ottp.ingest import reject_rules
from ottp.ingest.validate import MAX_CLOCK_AHEAD_HOURS, MAX_LINE_BYTES, MIN_EVENT_TIME

# Every field as text: numbers keep their digits, objects their JSON. The
# number fields are parsed a second time as doubles; present as text but not
# a double means the wrong JSON type. The fields come from the schema.
_EVENT_NUMBER_FIELDS = contract_rules.top_level_fields("number")


_EVENT_TEXT = ", ".join(
    [f"{f} string" for f in contract_rules.SCHEMA["properties"]] + ["_corrupt_record string"]
)


_EVENT_NUMBERS = ", ".join(f"{f} double" for f in _EVENT_NUMBER_FIELDS)


_TITLE_TEXT = (
    "title_id string, name string, category string, keywords string, kind string, "
    "series_id string, season string, episode string, duration_s string, "
    "release_year string, available_from string, is_available string, "
    "_corrupt_record string"
)


_TITLE_TYPED = "duration_s double, keywords array<string>"


# Fields that must be JSON strings.
_EVENT_STRINGS = contract_rules.top_level_fields("string")


_TITLE_STRINGS = ("title_id", "name", "category", "kind", "series_id", "available_from")


_JSON_OPTIONS = "map('columnNameOfCorruptRecord', '_corrupt_record', 'mode', 'PERMISSIVE')"


_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


_TIMESTAMP = "^" + contract_rules.DATE_TIME_PATTERN.replace("\\", "\\\\") + "$"


# As in ottp.ingest.load: NaN and Infinity outside string literals are not JSON, and
# an escaped NUL cannot be stored as text.
_JSON_STRING = r'"(?:[^"\\\\]|\\\\.)*"'


_ESCAPED_NUL = r"(^|[^\\\\])(\\\\\\\\)*\\\\u0000"


def _not_a_string(text_fields: Sequence[str]) -> str:
    """The first text field holding a number, boolean, object or array (null: none).

    The text parse renders such a value as its JSON text, which a string can
    also hold ("1.0"); only lines where one of these keys is followed by a
    non-string value are parsed again (as a variant) to read its type.
    """
    keys = "|".join(text_fields)
    branches = " ".join(
        f"when schema_of_variant(variant_get(try_parse_json(line), '$.{f}')) "
        f"not in ('STRING', 'NULL') then '{f}'"
        for f in text_fields
    )
    return (
        f"""case when line rlike '"({keys})"[ \\\\t]*:[ \\\\t]*[-0-9tf{{\\\\[]' """
        f"then case {branches} end end"
    )


def _line_checks() -> str:
    """The first reasons, in the DuckDB loader's order: reading, then JSON shape."""
    return f"""
        when not is_valid_utf8(line) then 'invalid_encoding|not UTF-8'
        when octet_length(line) > {MAX_LINE_BYTES} then 'line_too_long|over {MAX_LINE_BYTES} bytes'
        when trim(line) = '' then 'empty_line|empty line'
        when left(ltrim(line), 1) <> '{{' and try_parse_json(line) is not null
            then 'not_an_object|not a JSON object'
        when left(ltrim(line), 1) <> '{{' or j._corrupt_record is not null
            then 'invalid_json|unparsable JSON'
        when (contains(line, 'NaN') or contains(line, 'Infinity'))
             and regexp_replace(line, '{_JSON_STRING}', '""') rlike 'NaN|Infinity'
            then 'invalid_json|NaN or Infinity is not JSON'
        when contains(line, '\\\\u0000') and line rlike '{_ESCAPED_NUL}'
            then 'invalid_value|NUL character (\\\\u0000) in a string'
    """


def _json_quoted(value_sql: str) -> str:
    """The text as a JSON string (quoted, escaped), cut to 50 characters: as DuckDB's to_json."""
    return reject_rules.SPARK.json_quoted.format(value=value_sql)


def _event_rule_checks() -> str:
    """The CASE branches of every contract rule, in RULES' order (ottp.ingest.reject_rules)."""
    return "\n                ".join(reject_rules.event_rule_branches(reject_rules.SPARK))


def validated_events_sql() -> str:
    numbers = ",\n            ".join(f"n.{f} as {f}" for f in _EVENT_NUMBER_FIELDS)
    return f"""
    with parsed as (
        select *,
            case when left(ltrim(line), 1) = '{{'
                then from_json(line, '{_EVENT_TEXT}', {_JSON_OPTIONS}) end as j,
            case when left(ltrim(line), 1) = '{{'
                then from_json(line, '{_EVENT_NUMBERS}') end as n
        from _spark_lines
    ),
    typed as (
        select *,
            case when j.event_id rlike '{_UUID}' then lower(j.event_id) end as event_id,
            j.event_type as event_type,
            case when j.occurred_at rlike '{_TIMESTAMP}'
                then cast(j.occurred_at as timestamp) end as occurred_at,
            case when j.received_at rlike '{_TIMESTAMP}'
                then cast(j.received_at as timestamp) end as received_at,
            {numbers},
            case when left(j.properties, 1) = '{{' then j.properties end as properties,
            j.properties is not null and left(j.properties, 1) <> '{{' as properties_not_object,
            {_not_a_string(_EVENT_STRINGS)} as not_a_string
        from parsed
    ),
    checked as (
        select *,
            case
                {_line_checks()}
                {_event_rule_checks()}
                when occurred_at < timestamp '{MIN_EVENT_TIME}'
                     or received_at < timestamp '{MIN_EVENT_TIME}'
                    then 'timestamp_out_of_range|before {MIN_EVENT_TIME}'
                when received_at > current_timestamp() + interval {MAX_CLOCK_AHEAD_HOURS} hours
                    then 'timestamp_out_of_range|received_at in the future'
                when occurred_at > received_at + interval {MAX_CLOCK_AHEAD_HOURS} hours
                    then 'timestamp_out_of_range|occurred_at after received_at'
            end as verdict
        from typed
    )
    select file_path, landing_date, line_number, event_id, event_type,
           j.schema_version as schema_version, occurred_at, received_at,
           j.user_id as user_id, j.device_id as device_id, j.platform as platform,
           j.app_version as app_version, j.country as country,
           j.playback_id as playback_id, j.title_id as title_id,
           position_s, duration_s, from_position_s, properties,
           {_verdict_columns()}
    from checked
    """


def _variant_kind(field: str, json_text: str) -> str:
    """The JSON type of ``field`` in ``json_text`` as Spark's variant names it (null: absent)."""
    return f"schema_of_variant(variant_get(try_parse_json({json_text}), '$.{field}'))"


def _title_integer_checks() -> str:
    return "\n                ".join(reject_rules.title_integer_branches(reject_rules.SPARK))


def validated_titles_sql() -> str:
    return f"""
    with parsed as (
        select *,
            case when left(ltrim(line), 1) = '{{'
                then from_json(line, '{_TITLE_TEXT}', {_JSON_OPTIONS}) end as j,
            case when left(ltrim(line), 1) = '{{'
                then from_json(line, '{_TITLE_TYPED}') end as n
        from _spark_lines
    ),
    typed as (
        select *,
            n.duration_s as duration_s,
            cast(j.season as int) as season,
            cast(j.episode as int) as episode,
            cast(j.release_year as int) as release_year,
            cast(j.available_from as date) as available_from,
            coalesce(cast(j.is_available as boolean), true) as is_available,
            n.keywords as keywords,
            {_not_a_string(_TITLE_STRINGS)} as not_a_string
        from parsed
    ),
    checked as (
        select *,
            case
                {_line_checks()}
                {reject_rules.NOT_A_STRING_BRANCH}
                when j.title_id is null then 'missing_field|title_id'
                when j.name is null then 'missing_field|name'
                when j.category is null then 'missing_field|category'
                when j.kind is null then 'missing_field|kind'
                when j.duration_s is null then 'missing_field|duration_s'
                when duration_s is null or isnan(duration_s)
                    or duration_s in (double('inf'), double('-inf'))
                    then 'wrong_type|duration_s is not a number'
                when duration_s <= 0 then 'invalid_value|duration_s not positive'
                when j.kind not in ('movie', 'episode')
                    then 'invalid_value|kind ' || left(j.kind, 50)
                when not array_contains(:categories, j.category)
                    then 'invalid_value|category ' || {_json_quoted("j.category")}
                         || ' is not one of seeds/{contract_rules.CATEGORIES_SEED}'
                when j.kind = 'episode' and j.series_id is null
                    then 'missing_field|series_id'
                when j.available_from is not null and available_from is null
                    then 'wrong_type|available_from is not a date'
                when {_variant_kind("keywords", "line")} not in ('ARRAY<STRING>', 'ARRAY<VOID>')
                    or exists(keywords, k -> k is null)
                    then 'wrong_type|keywords is not a list of strings'
                {_title_integer_checks()}
                when {_variant_kind("is_available", "line")} <> 'BOOLEAN'
                    then 'wrong_type|is_available is not a boolean'
            end as verdict
        from typed
    )
    select file_path, landing_date, line_number, j.title_id as title_id, j.name as name,
           j.category as category, keywords, j.kind as kind, j.series_id as series_id,
           season, episode, duration_s, release_year, available_from, is_available,
           {_verdict_columns()}
    from checked
    """


def _verdict_columns() -> str:
    return """
        split_part(verdict, '|', 1) as reason_code,
        -- the first | only: the offending value quoted in a reason may hold one
        concat(split_part(verdict, '|', 1), ': ', substr(verdict, instr(verdict, '|') + 1))
            as reason,
        case when verdict is not null then line end as raw_line
    """
