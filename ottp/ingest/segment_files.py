"""Segment/RudderStack export files in the landing folder, mapped onto the event contract.

Segment's and RudderStack's object-storage destinations (S3, GCS, Azure) write
one tracking call per line, gzip or plain JSON lines. The loader reads such
files from one place only (the format is told by the folder, never guessed
from the content)::

    <landing>/segment/date=YYYY-MM-DD/<name>.gz | .json | .jsonl | .ndjson (and .json.gz ...)

This module stages their lines for the loader (``ottp.ingest.load``), beside
the native lines of the same chunk:

1. DuckDB reads the lines with the loader's own reader (the same refusals:
   encoding, length, CR) and gives each the loader's line-level verdict
   (empty, not JSON, not an object, NaN or Infinity, NUL).
2. DuckDB maps the well-formed lines with the collector's mapping compiled
   into SQL (``ottp.ingest.segment_sql``): what
   ``ottp.contract.segment.map_stored_message`` gives, the clock-skew
   correction with the export's ``receivedAt`` as the receipt time included.
   The few lines that select flags (duplicate keys, odd timestamps or
   numbers...) are mapped by that Python function (:func:`map_lines`).
3. DuckDB validates the mapped events with the loader's validation query
   (``validate.event_select_sql``) and appends every line's verdict to
   ``_validated`` under its file; a rejected line keeps the export's line as
   its ``raw_line``. Calls mapped to no contract event (``identify``, ad and
   buffering events...) are counted per file in ``_skipped_lines``.

So every line ends up loaded, a duplicate (``messageId`` is the event id),
rejected with its reason, or skipped as ``no_contract_event``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from ottp.contract import segment
from ottp.ingest import segment_sql, validate

logger = logging.getLogger(__name__)

NO_CONTRACT_EVENT = segment.NO_CONTRACT_EVENT  # the reason of a skipped call
# Lines the compiled mapping leaves to Python, handed over at a time (bounds memory).
BATCH_LINES = 100_000

# The loader's line-level verdicts (validate.event_select_sql), on the export's line.
_LINE_VERDICT = f"""
    case
        when line is null or trim(line) = '' then 'empty_line|empty line'
        when left(ltrim(line), 1) <> '{{' and json_valid(line)
            then 'not_an_object|not a JSON object'
        when left(ltrim(line), 1) <> '{{' or not json_valid(line)
            then 'invalid_json|unparsable JSON'
        when (contains(line, 'NaN') or contains(line, 'Infinity'))
             and regexp_matches(regexp_replace(line, '{validate.JSON_STRING}', '""', 'g'),
                                'NaN|Infinity')
            then 'invalid_json|NaN or Infinity is not JSON'
        when contains(line, '\\u0000') and regexp_matches(line, '{validate.ESCAPED_NUL}')
            then 'invalid_value|NUL character (\\u0000) in a string'
    end
"""


def _dump(event: dict) -> str:
    """The contract line, written as the collector writes it (segment_api, intake)."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate escape: kept escaped
        text = json.dumps(event, separators=(",", ":"))
    return text


def map_lines(
    lines: Sequence[str], mapping: segment.TrackerMapping
) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """(contract line, reason_code, reason) of each well-formed export line, in order.

    A mapped call gives its contract line (judged by the loader's query next);
    any other gives its reason (``no_contract_event`` for a skipped one).
    """
    out: list[str | None] = []
    codes: list[str | None] = []
    reasons: list[str | None] = []
    loads, map_one = json.loads, segment.map_stored_message
    for text in lines:
        try:
            outcome = map_one(loads(text), mapping)
        except (ValueError, RecursionError):
            out.append(None)
            codes.append("invalid_json")
            reasons.append("invalid_json: unparsable JSON")
            continue
        if outcome.event is None:
            out.append(None)
            codes.append(outcome.reason_code)
            reasons.append(outcome.reason)
        else:
            out.append(_dump(outcome.event))
            codes.append(None)
            reasons.append(None)
    return out, codes, reasons


def stage_lines(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """Read the export files into ``_seg_lines`` and their refused lines into ``_seg_refused``.

    Runs before the native read of the chunk (which replaces the reader's
    reject tables).
    """
    con.execute("drop table if exists _reader_errors")
    con.execute("drop table if exists _reader_scans")
    con.execute(
        f"""
        create or replace temp table _seg_lines as
        select row_number() over () as seq, filename as file_path, line,
               {_LINE_VERDICT} as verdict
        from {validate.reader()}
        """,
        {"paths": paths},
    )
    validate.collect_reader_rejects(con, "_seg_refused")


def append_validated(con: duckdb.DuckDBPyConnection, mapping: segment.TrackerMapping) -> None:
    """Map, validate and append the staged export lines to ``_validated`` and ``_line_rejects``.

    ``_validated`` and ``_line_rejects`` are the native read's (possibly empty);
    ``_skipped_lines`` gets the per-file count of skipped calls.
    """
    _map_staged(con, mapping)
    query = validate.validation_query(
        "select seq::varchar as file_path, line from _seg_mapped where line is not null",
        validate.event_select_sql(),
    )
    con.execute(f"create or replace temp table _seg_validated as {query}")
    con.execute(
        """
        insert into _validated by name
        select s.file_path, v.* exclude (file_path, raw_line),
               case when v.reason_code is not null then s.line end as raw_line
        from _seg_validated v join _seg_lines s on s.seq = v.file_path::bigint
        """
    )
    con.execute(
        """
        insert into _validated by name
        select s.file_path, m.reason_code, m.reason, s.line as raw_line
        from _seg_mapped m join _seg_lines s using (seq)
        where m.line is null and m.reason_code <> 'no_contract_event'
        union all
        select file_path, split_part(verdict, '|', 1), regexp_replace(verdict, '\\|', ': '), line
        from _seg_lines where verdict is not null
        """
    )
    con.execute(
        """
        insert into _skipped_lines
        select s.file_path, count(*)
        from _seg_mapped m join _seg_lines s using (seq)
        where m.reason_code = 'no_contract_event'
        group by all
        """
    )
    con.execute("insert into _line_rejects select * from _seg_refused")
    for table in ("_seg_lines", "_seg_mapped", "_seg_validated", "_seg_refused"):
        con.execute(f"drop table {table}")


def _map_staged(con: duckdb.DuckDBPyConnection, mapping: segment.TrackerMapping) -> int:
    """``_seg_mapped``: the mapping's outcome of every well-formed staged line, by ``seq``.

    The compiled mapping (``segment_sql``) answers in DuckDB; the lines it
    flags go through the Python mapping (:func:`map_lines`), ``BATCH_LINES`` at
    a time. Returns how many lines Python mapped.
    """
    select = segment_sql.mapped_select(
        mapping, "select seq, line from _seg_lines where verdict is null"
    )
    con.execute(f"create or replace temp table _seg_sql as {select}")
    con.execute(
        "create or replace temp table _seg_mapped as "
        "select seq, line, reason_code, reason from _seg_sql where not python"
    )
    con.execute(
        "create or replace temp table _seg_python as "
        "select s.seq, s.line from _seg_sql q join _seg_lines s using (seq) where q.python"
    )
    total = con.execute("select count(*) from _seg_python").fetchall()[0][0]
    for start in range(0, total, BATCH_LINES):
        batch = con.sql(
            "select seq, line from _seg_python order by seq limit $n offset $o",
            params={"n": BATCH_LINES, "o": start},
        ).to_arrow_table()
        _insert_mapped(con, batch, map_lines(batch.column("line").to_pylist(), mapping))
    con.execute("drop table _seg_sql")
    con.execute("drop table _seg_python")
    if total:
        logger.info("%d Segment lines mapped in Python (no exact SQL answer)", total)
    return total


def _insert_mapped(con: duckdb.DuckDBPyConnection, batch: pa.Table, outcome: tuple) -> None:
    lines, codes, reasons = outcome
    mapped = pa.table(  # noqa: F841 (read by the query below)
        {
            "seq": batch.column("seq"),
            "line": pa.array(lines, pa.string()),
            "reason_code": pa.array(codes, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    con.execute("insert into _seg_mapped select * from mapped")
