"""The live-fired triggers' landing files into ``raw.live_triggers``, exactly once.

The real-time server records every trigger it fires in
``<landing>/triggers/date=<day>/….ndjson.gz`` (``ottp.realtime.triggers``), one JSON
object a line with ``crm_trigger_log``'s columns. This loader, run after the events
load, puts each line in exactly one place, in one transaction:

- ``raw.live_triggers``: the first copy of each ``trigger_id``;
- counted as a duplicate (a trigger_id already loaded, or repeated);
- ``raw.rejected_live_triggers``: a malformed line, with its file, line number and
  reason (the line itself is not kept: it names a user, and this table is not
  rewritten by the deletion pass);

and records each file in ``raw.live_trigger_files`` with its counts, so a file is
read once (``lines == loaded + duplicates + rejected``). Parsing and checks run in
DuckDB over the file's lines; the trigger_id must be the batch's
md5(user_id|scenario|subject_id), so a line cannot claim another trigger's id.

``crm_trigger_log`` appends the loaded triggers to the ledger (macro
``live_triggers``), and never detects their ids again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ottp.realtime.landing_writer import salvage
from ottp.warehouse import LOCK_WAIT_S, connect

KIND = "triggers"

DDL = """
create schema if not exists raw;
create table if not exists raw.live_triggers (
    trigger_id varchar primary key,
    user_id varchar not null,
    scenario varchar not null,
    subject_type varchar not null,
    subject_id varchar not null,
    subject_name varchar,
    category varchar,
    cancel_reason varchar,
    cancel_reason_description varchar,
    is_cancel_reason_addressable boolean,
    is_suppressed boolean not null,
    occurred_at timestamp not null,
    fired_at timestamp not null,
    _source_file varchar not null,
    _loaded_at timestamp not null
);
create table if not exists raw.rejected_live_triggers (
    source_file varchar not null,
    line_number bigint not null,
    reason_code varchar not null,
    reason varchar not null,
    rejected_at timestamp not null
);
create table if not exists raw.live_trigger_files (
    file_name varchar primary key,
    path varchar not null,
    sha256 varchar not null,
    lines bigint not null,
    loaded bigint not null,
    duplicates bigint not null,
    rejected bigint not null,
    loaded_at timestamp not null
);
"""

_TEXT = ("trigger_id", "user_id", "scenario", "subject_type", "subject_id")
_OPTIONAL_TEXT = ("subject_name", "category", "cancel_reason", "cancel_reason_description")

# One row per line: its fields, and the first failed check as (reason_code, reason).
_CHECKED = f"""
with lines as (
    select unnest($lines) as line, unnest(range(1, len($lines) + 1)) as line_number
),
valid as (
    -- only valid JSON reaches the extractors (they raise on anything else)
    select *, json_valid(line) as is_json, case when json_valid(line) then line end as j
    from lines
),
parsed as (
    select
        line_number,
        line,
        is_json,
        json_type(j) as json_kind,
        {", ".join(f"json_extract_string(j, '$.{c}') as {c}" for c in (*_TEXT, *_OPTIONAL_TEXT))},
        json_extract(j, '$.is_suppressed') as is_suppressed_json,
        json_extract(j, '$.is_cancel_reason_addressable') as addressable_json,
        json_extract_string(j, '$.occurred_at') as occurred_text,
        json_extract_string(j, '$.fired_at') as fired_text
    from valid
),
typed as (
    select
        *,
        try_cast(occurred_text as timestamp) as occurred_at,
        try_cast(fired_text as timestamp) as fired_at,
        case when json_type(is_suppressed_json) = 'BOOLEAN'
            then is_suppressed_json::boolean end as is_suppressed,
        case when json_type(addressable_json) = 'BOOLEAN'
            then addressable_json::boolean end as is_cancel_reason_addressable
    from parsed
)
select
    *,
    case
        when trim(line) = '' then 'empty_line'
        when not is_json then 'invalid_json'
        when json_kind <> 'OBJECT' then 'not_an_object'
        {" ".join(f"when {c} is null then 'missing_field'" for c in _TEXT)}
        when is_suppressed_json is null or occurred_text is null or fired_text is null
            then 'missing_field'
        when is_suppressed is null or occurred_at is null or fired_at is null
            or (addressable_json is not null and json_type(addressable_json) <> 'NULL'
                and is_cancel_reason_addressable is null)
            then 'wrong_type'
        when trigger_id <> md5(user_id || '|' || scenario || '|' || subject_id)
            then 'invalid_value'
    end as reason_code,
    case
        when trim(line) = '' then 'empty_line'
        when not is_json then 'invalid_json'
        when json_kind <> 'OBJECT' then 'not_an_object: ' || json_kind
        {" ".join(f"when {c} is null then 'missing_field: {c}'" for c in _TEXT)}
        when is_suppressed_json is null then 'missing_field: is_suppressed'
        when occurred_text is null then 'missing_field: occurred_at'
        when fired_text is null then 'missing_field: fired_at'
        when is_suppressed is null then 'wrong_type: is_suppressed is not a boolean'
        when occurred_at is null then 'wrong_type: occurred_at is not a timestamp'
        when fired_at is null then 'wrong_type: fired_at is not a timestamp'
        when addressable_json is not null and json_type(addressable_json) <> 'NULL'
            and is_cancel_reason_addressable is null
            then 'wrong_type: is_cancel_reason_addressable is not a boolean'
        when trigger_id <> md5(user_id || '|' || scenario || '|' || subject_id)
            then 'invalid_value: trigger_id is not md5(user_id|scenario|subject_id)'
    end as reason
from typed
"""


@dataclass
class LiveTriggerReport:
    """What one load did, file by file and in total."""

    files_loaded: int = 0
    files_skipped: int = 0
    lines: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.lines == self.loaded + self.duplicates + self.rejected


def discover(landing_dir: Path) -> list[Path]:
    """The closed trigger files (an open one ends ``.open`` and is read once closed)."""
    root = Path(landing_dir) / KIND
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("date=*/*") if p.is_file() and p.name.endswith(".ndjson.gz"))


def _lines(data: bytes) -> tuple[list[str], bool]:
    """The lines of the file's complete gzip members (and the whole lines of a cut one);
    True when bytes were left over (a damaged or cut file)."""
    good, tail = salvage(data)
    text = b""
    if good:
        text = gzip.decompress(data[:good])
    lines = (text + tail).decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's end
    return lines, good != len(data)


def load_live_triggers(
    warehouse_path: Path, landing_dir: Path, wait_s: float = LOCK_WAIT_S
) -> LiveTriggerReport:
    """Load every trigger file not loaded yet; one transaction for the whole run."""
    report = LiveTriggerReport()
    con = connect(warehouse_path, wait_s=wait_s)
    try:
        con.execute(DDL)
        known = {
            r[0] for r in con.execute("select file_name from raw.live_trigger_files").fetchall()
        }
        con.execute("begin transaction")
        for path in discover(landing_dir):
            name = f"{path.parent.name}/{path.name}"
            if name in known:
                report.files_skipped += 1
                continue
            _load_file(con, path, name, report)
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")  # nothing of this run stays; the next run redoes it
        raise
    finally:
        con.close()
    return report


def _load_file(
    con: duckdb.DuckDBPyConnection, path: Path, name: str, report: LiveTriggerReport
) -> None:
    data = path.read_bytes()
    lines, damaged = _lines(data)
    con.execute(f"create or replace temp table checked as {_CHECKED}", {"lines": lines})
    con.execute(
        "insert into raw.rejected_live_triggers select ?, line_number, reason_code, reason, "
        "now() from checked where reason_code is not null",
        [name],
    )
    loaded = con.execute(
        """
        insert into raw.live_triggers
        select trigger_id, user_id, scenario, subject_type, subject_id, subject_name,
            category, cancel_reason, cancel_reason_description,
            is_cancel_reason_addressable, is_suppressed, occurred_at, fired_at, ?, now()
        from checked
        where reason_code is null
            and trigger_id not in (select trigger_id from raw.live_triggers)
        qualify row_number() over (partition by trigger_id order by line_number) = 1
        """,
        [name],
    ).fetchall()[0][0]
    by_reason = dict(
        con.execute(
            "select reason_code, count(*) from checked where reason_code is not null group by 1"
        ).fetchall()
    )
    lines_n = len(lines)
    dupes = lines_n - loaded - sum(by_reason.values())
    if damaged:
        # what follows the last whole line cannot be read: one rejected row, counted as a line
        lines_n += 1
        by_reason["damaged_gzip"] = by_reason.get("damaged_gzip", 0) + 1
        con.execute(
            "insert into raw.rejected_live_triggers values (?, ?, 'damaged_gzip', "
            "'damaged_gzip: bytes after the last complete line do not decompress', now())",
            [name, lines_n],
        )
    rejected = sum(by_reason.values())
    for code, n in by_reason.items():
        report.rejected_by_reason[code] = report.rejected_by_reason.get(code, 0) + n
    con.execute(
        "insert into raw.live_trigger_files values (?, ?, ?, ?, ?, ?, ?, now())",
        [name, str(path), hashlib.sha256(data).hexdigest(), lines_n, loaded, dupes, rejected],
    )
    report.files_loaded += 1
    report.lines += lines_n
    report.loaded += loaded
    report.duplicates += dupes
    report.rejected += rejected
