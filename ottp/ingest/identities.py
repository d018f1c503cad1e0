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

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from ottp.contract import segment
from ottp.ingest import side_files
from ottp.warehouse import LOCK_WAIT_S

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


IDENTITY_FILES = side_files.SideFiles(
    kind=KIND,
    ddl=DDL,
    checked=_CHECKED,
    table="raw.identities",
    key="message_id",
    insert_columns="message_id, user_id, device_id, timezone('UTC', identified_ts), "
    "timezone('UTC', received_ts), ?, now()",
    rejected_table="raw.rejected_identities",
    files_table="raw.identity_files",
)
IdentityReport = side_files.SideFileReport


def discover(landing_dir: Path) -> list[Path]:
    """The closed identity files (an open one ends ``.open`` and is read once closed)."""
    return side_files.discover(landing_dir, KIND)


def load_identities(
    warehouse_path: Path, landing_dir: Path, wait_s: float = LOCK_WAIT_S
) -> IdentityReport:
    """Load every identity file not loaded yet; one transaction for the whole run."""
    return side_files.load(IDENTITY_FILES, warehouse_path, landing_dir, wait_s)
