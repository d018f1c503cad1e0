"""Identities (an ``identify``: this device belongs to this user): their landing lines and loader.

The collector (``ottp serve``, ``ottp.realtime.segment_api``) turns each valid
Segment/RudderStack ``identify`` call into one line of
``<landing>/identities/date=<day>/….ndjson.gz`` (:func:`identity_line`; the
same fsynced writer as the events), before it answers. A line holds
``message_id`` (the call's messageId as sent), ``user_id`` (``userId``),
``device_id`` (``anonymousId``, else ``context.device.id``: the mapping's
``device_id_from``), ``identified_at`` (the call's time, skew-corrected as
events are) and ``received_at``; traits are not kept.

:func:`load_identities`, run after the events load, puts each line in exactly
one place, in one transaction, checked in DuckDB over the file's lines:

- ``raw.identities``: the first copy of each ``message_id``;
- counted as a duplicate (a message_id already loaded, or repeated);
- ``raw.rejected_identities``: a malformed line, with its file, line number and
  reason (the line itself is not kept: it names a user);

and records each file in ``raw.identity_files`` with its counts, so a file is
read once (``lines == loaded + duplicates + rejected``). The dbt model
``device_users`` reads ``raw.identities`` (macro ``identities``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from ottp.contract import segment
from ottp.ingest.live_triggers import _lines as file_lines
from ottp.warehouse import LOCK_WAIT_S, connect

KIND = "identities"
FIELDS = ("message_id", "user_id", "device_id", "identified_at", "received_at")

DDL = """
create schema if not exists raw;
create table if not exists raw.identities (
    message_id varchar primary key,
    user_id varchar not null,
    device_id varchar not null,
    identified_at timestamp not null,
    received_at timestamp not null,
    _source_file varchar not null,
    _loaded_at timestamp not null
);
create table if not exists raw.rejected_identities (
    source_file varchar not null,
    line_number bigint not null,
    reason_code varchar not null,
    reason varchar not null,
    rejected_at timestamp not null
);
create table if not exists raw.identity_files (
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


class IdentityRejected(ValueError):
    """An ``identify`` that makes no identity: ``code`` and ``reason`` as the events' reasons."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, f"{code}: {reason}"


def _text(value: object, name: str) -> str:
    if value is None or value == "":
        raise IdentityRejected("missing_field", name)
    if not isinstance(value, str):
        raise IdentityRejected("wrong_type", f"{name} is not a string")
    return value


def identity_line(
    message: Mapping,
    mapping: segment.TrackerMapping,
    received_at: datetime,
    batch_sent_at: object = None,
) -> dict:
    """One ``identify`` call as its landing line; :class:`IdentityRejected` says why not."""
    paths = mapping.raw["device_id_from"]
    device = next((v for v in (segment._get(message, p) for p in paths) if v is not None), None)
    try:
        identified_at = segment.occurred_at(message, received_at, batch_sent_at)
    except segment._Reject as exc:  # the events' own timestamp rules and reasons
        raise IdentityRejected(exc.code, exc.reason.split(": ", 1)[1]) from None
    return {
        "message_id": _text(message.get("messageId"), "message_id (messageId)"),
        "user_id": _text(message.get("userId"), "user_id (userId)"),
        "device_id": _text(device, "device_id (" + " or ".join(paths) + ")"),
        "identified_at": identified_at,
        "received_at": segment._stamp(received_at),
    }


def encode(line: dict) -> bytes:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode()


# One row per line: its fields, and the first failed check as (reason_code, reason).
_CHECKED = f"""
with lines as (
    select unnest($lines) as line, unnest(range(1, len($lines) + 1)) as line_number
),
valid as (
    select *, json_valid(line) as is_json, case when json_valid(line) then line end as j
    from lines
),
parsed as (
    select
        line_number, line, is_json, json_type(j) as json_kind,
        {", ".join(f"json_extract_string(j, '$.{c}') as {c}" for c in FIELDS)},
        {", ".join(f"json_type(j, '$.{c}') as {c}_type" for c in FIELDS[:3])}
    from valid
),
typed as (
    select
        *,
        try_cast(identified_at as timestamptz) as identified_ts,
        try_cast(received_at as timestamptz) as received_ts
    from parsed
),
checked as (
    select
        *,
        case
            when trim(line) = '' then 'empty_line'
            when not is_json then 'invalid_json'
            when json_kind <> 'OBJECT' then 'not_an_object: ' || json_kind
            {" ".join(f"when {c} is null or {c} = '' then 'missing_field: {c}'" for c in FIELDS)}
            {
    " ".join(
        f"when {c}_type <> 'VARCHAR' then 'wrong_type: {c} is not a string'" for c in FIELDS[:3]
    )
}
            when identified_ts is null then 'wrong_type: identified_at is not a timestamp'
            when received_ts is null then 'wrong_type: received_at is not a timestamp'
        end as reason
    from typed
)
select *, split_part(reason, ':', 1) as reason_code from checked
"""


@dataclass
class IdentityReport:
    """What one load did, in total."""

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
    """The closed identity files (an open one ends ``.open`` and is read once closed)."""
    root = Path(landing_dir) / KIND
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("date=*/*") if p.is_file() and p.name.endswith(".ndjson.gz"))


def load_identities(
    warehouse_path: Path, landing_dir: Path, wait_s: float = LOCK_WAIT_S
) -> IdentityReport:
    """Load every identity file not loaded yet; one transaction for the whole run."""
    report = IdentityReport()
    con = connect(warehouse_path, wait_s=wait_s)
    try:
        con.execute(DDL)
        known = {r[0] for r in con.execute("select file_name from raw.identity_files").fetchall()}
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


def _load_file(con: duckdb.DuckDBPyConnection, path: Path, name: str, report: IdentityReport):
    data = path.read_bytes()
    lines, damaged = file_lines(data)
    con.execute(f"create or replace temp table checked as {_CHECKED}", {"lines": lines})
    con.execute(
        "insert into raw.rejected_identities select ?, line_number, reason_code, reason, now() "
        "from checked where reason is not null",
        [name],
    )
    loaded = con.execute(
        """
        insert into raw.identities
        select message_id, user_id, device_id,
            timezone('UTC', identified_ts), timezone('UTC', received_ts), ?, now()
        from checked
        where reason is null and message_id not in (select message_id from raw.identities)
        qualify row_number() over (partition by message_id order by line_number) = 1
        """,
        [name],
    ).fetchall()[0][0]
    by_reason = dict(
        con.execute(
            "select reason_code, count(*) from checked where reason is not null group by 1"
        ).fetchall()
    )
    lines_n = len(lines)
    dupes = lines_n - loaded - sum(by_reason.values())
    if damaged:
        # what follows the last whole line cannot be read: one rejected row, counted as a line
        lines_n += 1
        by_reason["damaged_gzip"] = by_reason.get("damaged_gzip", 0) + 1
        con.execute(
            "insert into raw.rejected_identities values (?, ?, 'damaged_gzip', "
            "'damaged_gzip: bytes after the last complete line do not decompress', now())",
            [name, lines_n],
        )
    rejected = sum(by_reason.values())
    for code, n in by_reason.items():
        report.rejected_by_reason[code] = report.rejected_by_reason.get(code, 0) + n
    con.execute(
        "insert into raw.identity_files values (?, ?, ?, ?, ?, ?, ?, now())",
        [name, str(path), hashlib.sha256(data).hexdigest(), lines_n, loaded, dupes, rejected],
    )
    report.files_loaded += 1
    report.lines += lines_n
    report.loaded += loaded
    report.duplicates += dupes
    report.rejected += rejected
