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

from pathlib import Path

from ottp.ingest import side_files
from ottp.warehouse import LOCK_WAIT_S

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


LIVE_TRIGGER_FILES = side_files.SideFiles(
    kind=KIND,
    ddl=DDL,
    checked=_CHECKED,
    table="raw.live_triggers",
    key="trigger_id",
    insert_columns="trigger_id, user_id, scenario, subject_type, subject_id, subject_name, "
    "category, cancel_reason, cancel_reason_description, is_cancel_reason_addressable, "
    "is_suppressed, occurred_at, fired_at, ?, now()",
    rejected_table="raw.rejected_live_triggers",
    files_table="raw.live_trigger_files",
)
LiveTriggerReport = side_files.SideFileReport


def discover(landing_dir: Path) -> list[Path]:
    """The closed trigger files (an open one ends ``.open`` and is read once closed)."""
    return side_files.discover(landing_dir, KIND)


def load_live_triggers(
    warehouse_path: Path, landing_dir: Path, wait_s: float = LOCK_WAIT_S
) -> LiveTriggerReport:
    """Load every trigger file not loaded yet; one transaction for the whole run."""
    return side_files.load(LIVE_TRIGGER_FILES, warehouse_path, landing_dir, wait_s)
