"""Parsing and validating landing lines in DuckDB: the verdict of every line.

``validate_events`` and ``validate_titles`` read a chunk of landing files with
DuckDB's CSV reader (one VARCHAR column per line), parse each line once and
give the first reason it fails, or null, into the temp table ``_validated``;
lines the reader itself refuses go to ``_line_rejects``. The contract's rules
come from ``ottp.ingest.reject_rules``; the line-level checks (encoding,
length, JSON shape, NaN, NUL) and the catalog's own checks are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ottp.contract import rules as contract_rules
from ottp.ingest import reject_rules

MAX_LINE_BYTES = 1 << 20


# Client clocks drift; anything further off than this is not a real event time.
MAX_CLOCK_AHEAD_HOURS = 24


MIN_EVENT_TIME = "2000-01-01"


# Text fields are read as VARCHAR, other fields as raw JSON (to check their
# JSON type). json_transform turns a number or an object in a text field into
# its JSON text, so a line whose text field looks like one (a number, true or
# false, an object or a list) is parsed once more for its JSON types: a wrong
# type is told apart from the text "12345", and ordinary lines pay nothing.
# Text that always looks like a number ("1.0"): read as JSON and unwrapped, so
# that ordinary lines are not all parsed twice.
_EVENT_NUMERIC_STRINGS = ("schema_version",)


_EVENT_STRINGS = tuple(
    f for f in contract_rules.top_level_fields("string") if f not in _EVENT_NUMERIC_STRINGS
)


# Fields whose parsing (uuid, timestamp, date) already rejects any other JSON
# type as wrong_type: not worth a second look.
_PARSED_ANYWAY = ("event_id", "occurred_at", "received_at", "available_from")


_EVENT_JSON = contract_rules.top_level_fields("number") + contract_rules.top_level_fields("object")


_TITLE_STRINGS = ("title_id", "name", "category", "kind", "series_id", "available_from")


_TITLE_JSON = ("keywords", "season", "episode", "duration_s", "release_year", "is_available")


def _struct(strings: Sequence[str], json_fields: Sequence[str]) -> str:
    fields = [f'"{f}":"VARCHAR"' for f in strings] + [f'"{f}":"JSON"' for f in json_fields]
    return "{" + ",".join(fields) + "}"


_EVENT_STRUCT = _struct(_EVENT_STRINGS, _EVENT_NUMERIC_STRINGS + _EVENT_JSON)


_TITLE_STRUCT = _struct(_TITLE_STRINGS, _TITLE_JSON)


# An escaped NUL (\u0000) preceded by an even number of backslashes: neither
# PostgreSQL text nor jsonb can hold it, so it never enters the warehouse.
ESCAPED_NUL = r"(^|[^\\])(\\\\)*\\u0000"


# JSON string literals, removed before looking for NaN and Infinity outside them.
JSON_STRING = r'"(?:[^"\\]|\\.)*"'


def _parsed_lines(struct: str, strings: Sequence[str], numeric: Sequence[str] = ()) -> str:
    """CTEs ``raw_parsed`` and ``parsed``: one JSON parse per line.

    ``j`` is null for a line that is not a JSON object; ``not_a_string`` names the
    first text field holding another JSON type; ``has_non_finite`` flags NaN and
    Infinity (DuckDB's parser accepts them, JSON and PostgreSQL do not) and
    ``has_nul`` an escaped NUL. Each field of ``numeric`` comes as ``<field>_text``.
    """
    unwrapped = "".join(
        f"case when left(j.{f}::varchar, 1) = '\"' then j.{f}->>'$' end as {f}_text, "
        for f in numeric
    )
    numeric_wrong = " ".join(f"when left(j.{f}::varchar, 1) <> '\"' then '{f}'" for f in numeric)
    # json_transform renders a non-string value of a text field as its JSON
    # text, which is valid JSON; a real string rarely is ("12345" is). Only
    # those lines pay for the exact look at the JSON types below.
    suspicious = " or ".join(f"json_valid(j.{f})" for f in strings if f not in _PARSED_ANYWAY)
    paths = ", ".join(f"'$.{f}'" for f in strings)
    names = ", ".join(f"'{f}'" for f in strings)
    return f"""
        , raw_parsed as (
            select file_path, line,
                   -- json_valid first: try() would redo a whole vector row by row
                   -- for one bad line, which costs 3x the parse itself
                   case when left(ltrim(line), 1) = '{{' and json_valid(line)
                        then json_transform(line, '{struct}') end as j
            from lines
        ),
        parsed as (
            select file_path, line, j, {unwrapped}
                   case when j is null then null {numeric_wrong}
                        when {suspicious} then
                       ([{names}])[list_position(
                           list_transform(json_type(line, [{paths}]),
                                          lambda t: coalesce(t, 'NULL') not in ('VARCHAR', 'NULL')),
                           true)]
                   end as not_a_string,
                   case
                       when j is null then null
                       when contains(line, 'NaN') or contains(line, 'Infinity') then
                           regexp_matches(
                               regexp_replace(line, '{JSON_STRING}', '""', 'g'),
                               'NaN|Infinity'
                           )
                       else false
                   end as has_non_finite,
                   -- case, not and: and evaluates the regex on every line
                   case when j is not null and contains(line, '\\u0000')
                        then regexp_matches(line, '{ESCAPED_NUL}') else false
                   end as has_nul
            from raw_parsed
        )
    """


def reader(paths_param: str = "$paths") -> str:
    """Landing lines as rows of one VARCHAR column; refused lines go to reject tables."""
    return f"""
        read_csv({paths_param}, columns = {{'line': 'VARCHAR'}}, header = false,
                 delim = '\x1f', quote = '', escape = '', new_line = '\\n',
                 auto_detect = false, filename = true, max_line_size = {MAX_LINE_BYTES},
                 ignore_errors = true, store_rejects = true,
                 rejects_table = '_reader_errors', rejects_scan = '_reader_scans')
    """


def validation_query(source: str, select_sql: str) -> str:
    """A validation query (``select_sql``) over ``source``: rows of (file_path, line)."""
    return f"with lines as ({source}) {select_sql}"


def create_validated(
    con: duckdb.DuckDBPyConnection,
    paths: list[str],
    select_sql: str,
    params: dict | None = None,
) -> None:
    """Run one validation query over the files (or none) and collect the reader's refusals.

    ``params`` are the query's own parameters (besides ``$paths``).
    """
    con.execute("drop table if exists _reader_errors")
    con.execute("drop table if exists _reader_scans")
    if paths:
        source = f"select filename as file_path, line from {reader()}"
    else:
        source = "select null::varchar as file_path, null::varchar as line where false"
    params = {**(params or {}), **({"paths": paths} if paths else {})}
    con.execute(
        f"create or replace temp table _validated as {validation_query(source, select_sql)}",
        params or None,
    )
    if paths:
        collect_reader_rejects(con, "_line_rejects")
    else:
        con.execute(
            "create or replace temp table _line_rejects "
            "(file_path varchar, line ubigint, error_type varchar, csv_line varchar)"
        )
    # Lines counted but neither loaded nor rejected (ottp.ingest.segment_files fills it).
    con.execute("create or replace temp table _skipped_lines (file_path varchar, n bigint)")


def collect_reader_rejects(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """``table``: the lines the last :func:`reader` refused, one row per line."""
    con.execute(
        f"""
        create or replace temp table {table} as
        select s.file_path, e.line, e.error_type, e.csv_line
        from _reader_errors e join _reader_scans s using (scan_id, file_id)
        -- the reader reports a line once per surplus delimiter: count it once
        qualify row_number() over (
            partition by s.file_path, e.line order by e.error_type
        ) = 1
        """
    )


def _json_number(col: str) -> str:
    """A JSON field that must be a number: null if absent, 'wrong' if not a number."""
    return (
        f"case when {col} is null or {col}::varchar = 'null' then null "
        f"when left({col}::varchar, 1) in ('\"', '{{', '[', 't', 'f') then 'NaN'::double "
        f"else coalesce(try_cast({col}::varchar as double), 'NaN'::double) end"
    )


def _verdict_columns() -> str:
    """reason_code and reason from a 'code|detail' verdict; the raw line kept only if rejected."""
    return """
        split_part(verdict, '|', 1) as reason_code,
        regexp_replace(verdict, '\\|', ': ') as reason,
        case when verdict is not null then line end as raw_line
    """


_DATE_TIME = reject_rules.duckdb_literal(contract_rules.DATE_TIME_PATTERN)


def _event_rule_checks() -> str:
    """The CASE branches of every contract rule, in RULES' order (ottp.ingest.reject_rules)."""
    return "\n                    ".join(reject_rules.event_rule_branches(reject_rules.DUCKDB))


def validate_events(
    con: duckdb.DuckDBPyConnection, paths: list[str], segment_paths: Sequence[str] = ()
) -> None:
    """Parse each line once and give the first reason it fails, or null if valid.

    ``segment_paths`` are files in Segment/RudderStack export format: their
    calls are mapped onto the contract and judged by the same query
    (``ottp.ingest.segment_files``), their verdicts appended to ``_validated``.
    """
    if not segment_paths:
        create_validated(con, paths, event_select_sql())
        return
    from ottp.contract import segment
    from ottp.ingest import segment_files  # it builds on this module

    mapping = segment.configured_mapping()
    segment_files.stage_lines(con, list(segment_paths))
    create_validated(con, paths, event_select_sql())
    segment_files.append_validated(con, mapping)


def event_select_sql() -> str:
    """The event validation query over ``lines`` (file_path, line), loader's and collector's.

    It continues the ``with lines as (...)`` of :func:`validation_query`.
    """
    numbers = ",\n                   ".join(
        f"{_json_number('j.' + f)} as {f}" for f in contract_rules.top_level_fields("number")
    )
    return f"""
        {_parsed_lines(_EVENT_STRUCT, _EVENT_STRINGS, _EVENT_NUMERIC_STRINGS)},
        typed as (
            select file_path, line, j, schema_version_text, not_a_string, has_non_finite, has_nul,
                   try_cast(j.event_id as uuid) as event_id,
                   j.event_type as event_type,
                   case when regexp_full_match(j.occurred_at, {_DATE_TIME})
                        then try_cast(upper(j.occurred_at) as timestamptz) at time zone 'UTC'
                   end as occurred_at,
                   case when regexp_full_match(j.received_at, {_DATE_TIME})
                        then try_cast(upper(j.received_at) as timestamptz) at time zone 'UTC'
                   end as received_at,
                   {numbers},
                   case when left(j.properties::varchar, 1) = '{{' then j.properties end
                       as properties,
                   j.properties is not null and left(j.properties::varchar, 1) <> '{{'
                       and j.properties::varchar <> 'null' as properties_not_object
            from parsed
        ),
        checked as (
            select *,
                case
                    when j is null and (line is null or trim(line) = '')
                        then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when has_non_finite then 'invalid_json|NaN or Infinity is not JSON'
                    when has_nul then 'invalid_value|NUL character (\\u0000) in a string'
                    {_event_rule_checks()}
                    when occurred_at < timestamp '{MIN_EVENT_TIME}'
                         or received_at < timestamp '{MIN_EVENT_TIME}'
                        then 'timestamp_out_of_range|before {MIN_EVENT_TIME}'
                    when received_at > now() at time zone 'UTC'
                         + interval {MAX_CLOCK_AHEAD_HOURS} hour
                        then 'timestamp_out_of_range|received_at in the future'
                    when occurred_at > received_at + interval {MAX_CLOCK_AHEAD_HOURS} hour
                        then 'timestamp_out_of_range|occurred_at after received_at'
                end as verdict
            from typed
        )
        select file_path, event_id, event_type, schema_version_text as schema_version,
               occurred_at, received_at, j.user_id as user_id, j.device_id as device_id,
               j.platform as platform, j.app_version as app_version, j.country as country,
               j.playback_id as playback_id, j.title_id as title_id,
               position_s, duration_s, from_position_s, properties,
               {_verdict_columns()}
        from checked
        """


# The lines DuckDB's CSV reader refuses before any JSON is read, with the
# loader's verdict (ottp.ingest.load._write): the same for lines held in memory.
REFUSED_TOO_LONG = ("line_too_long", f"line_too_long: over {MAX_LINE_BYTES} bytes")
REFUSED_ENCODING = ("invalid_encoding", "invalid_encoding: not UTF-8")
REFUSED_CONTROL = (
    "invalid_json",
    "invalid_json: a raw control character (CR or 0x1F) inside the line",
)


def reader_refusal(line: bytes) -> tuple[str, str] | None:
    """(reason_code, reason) if the loader's reader refuses this line, else None.

    ``line`` is one line without its LF (a CRLF's CR already removed, as the
    loader's ``without_cr`` does); the reader's limit counts the line's end too.
    """
    if len(line) >= MAX_LINE_BYTES:
        return REFUSED_TOO_LONG
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return REFUSED_ENCODING
    if b"\r" in line or b"\x1f" in line:
        return REFUSED_CONTROL
    return None


@dataclass(frozen=True)
class LineVerdict:
    """One in-memory line's verdict: its event_id (if it has a valid one) and why it fails."""

    event_id: str | None
    reason_code: str | None
    reason: str | None


# Lines held in memory instead of read from files: the position stands in the
# file_path column the validation query carries through.
_MEMORY_LINES = (
    "select i::varchar as file_path, $lines[i + 1] as line from range(len($lines)) as t(i)"
)


def validate_event_lines(con: duckdb.DuckDBPyConnection, lines: Sequence[str]) -> list[LineVerdict]:
    """The loader's verdict on each line (text the reader accepts), in order: one query.

    The same query as :func:`validate_events` (:func:`event_select_sql`), over a
    list parameter instead of files; lines the reader would refuse are the
    caller's to sort out first with :func:`reader_refusal`.
    """
    if not lines:
        return []
    query = validation_query(_MEMORY_LINES, event_select_sql())
    rows = con.execute(
        f"select file_path::integer as i, event_id::varchar, reason_code, reason "
        f"from ({query}) order by i",
        {"lines": list(lines)},
    ).fetchall()
    return [LineVerdict(event_id, code, reason) for _, event_id, code, reason in rows]


def _title_integer_checks() -> str:
    return "\n                    ".join(reject_rules.title_integer_branches(reject_rules.DUCKDB))


def validate_titles(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """As validate_events, for catalog lines; the categories come from the seed, read now."""
    create_validated(
        con,
        paths,
        f"""
        {_parsed_lines(_TITLE_STRUCT, _TITLE_STRINGS)},
        typed as (
            select *,
                   {_json_number("j.duration_s")} as duration_s,
                   try_cast(j.season::varchar as integer) as season,
                   try_cast(j.episode::varchar as integer) as episode,
                   try_cast(j.release_year::varchar as integer) as release_year,
                   try_cast(j.available_from as date) as available_from,
                   coalesce(j.is_available::varchar = 'true', true) as is_available,
                   try_cast(j.keywords as varchar[]) as keywords
            from parsed
        ),
        checked as (
            select *,
                case
                    when j is null and (line is null or trim(line) = '')
                        then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when has_non_finite then 'invalid_json|NaN or Infinity is not JSON'
                    when has_nul then 'invalid_value|NUL character (\\u0000) in a string'
                    when not_a_string is not null
                        then 'wrong_type|' || not_a_string || ' is not a string'
                    when j.title_id is null then 'missing_field|title_id'
                    when j.name is null then 'missing_field|name'
                    when j.category is null then 'missing_field|category'
                    when j.kind is null then 'missing_field|kind'
                    when j.duration_s is null then 'missing_field|duration_s'
                    when isnan(duration_s) or isinf(duration_s)
                        then 'wrong_type|duration_s is not a number'
                    when duration_s <= 0 then 'invalid_value|duration_s not positive'
                    when j.kind not in ('movie', 'episode')
                        then 'invalid_value|kind ' || to_json(left(j.kind, 50))
                    when not list_contains($categories, j.category)
                        then 'invalid_value|category ' || to_json(left(j.category, 50))
                             || ' is not one of seeds/{contract_rules.CATEGORIES_SEED}'
                    when j.kind = 'episode' and j.series_id is null
                        then 'missing_field|series_id'
                    when j.available_from is not null and available_from is null
                        then 'wrong_type|available_from is not a date'
                    when json_type(j.keywords) <> 'ARRAY'
                         or len(list_filter(json_type(j.keywords, '$[*]'),
                                            lambda t: t <> 'VARCHAR')) > 0
                        then 'wrong_type|keywords is not a list of strings'
                    {_title_integer_checks()}
                    when json_type(j.is_available) <> 'BOOLEAN'
                        then 'wrong_type|is_available is not a boolean'
                    -- present but null: no JSON null where the schema allows none
                    when (j.keywords is null or j.is_available is null)
                         and contains(line, 'null')
                         and list_contains(json_type(line, ['$.keywords', '$.is_available']),
                                           'NULL')
                        then 'wrong_type|' || if(json_type(line, '$.keywords') = 'NULL',
                                                 'keywords is not a list of strings',
                                                 'is_available is not a boolean')
                end as verdict
            from typed
        )
        select file_path, j.title_id as title_id, j.name as name, j.category as category,
               keywords, j.kind as kind, j.series_id as series_id, season, episode,
               duration_s, release_year, available_from, is_available,
               {_verdict_columns()}
        from checked
        """,
        {"categories": list(contract_rules.title_categories())},
    )
