"""The simulated events as Segment/RudderStack export lines (private): ``--format segment``.

One tracking call per line, as Segment's storage destinations write them: the
contract event a native line holds, turned back into the call the mapping
(``ottp/contract/segment_mapping.json``, or ``OTTP_SEGMENT_MAPPING``) maps onto
it. So the loader gives back the very events of the native files of the same
seed: ``messageId`` is the event id; the event name, the ``properties`` names and
the page name are the first ones the mapping lists for the event type;
``anonymousId``, ``userId`` and ``context`` (device type, app version, country)
carry the device's fields.

Times: each device's clock is off the server's by a few seconds to minutes
(one offset per device, drawn from the seed). ``originalTimestamp`` and
``sentAt`` are on the device's clock, ``receivedAt`` on the server's, and
``timestamp`` is the corrected time Segment computes,
``receivedAt - (sentAt - originalTimestamp)``: the native line's ``occurred_at``.

The native lines (already built column-wise) are rewritten in one DuckDB query
per part; the malformed lines get a defect of their own format
(:func:`corrupt`).
"""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pyarrow as pa

from ottp.contract import rules as contract_rules
from ottp.contract import segment

# line kinds (ottp.simulator.lines) -> the loader's reason for a Segment line
REASONS = {
    "invalid_json": "invalid_json",
    "wrong_type": "wrong_type",
    "missing_field": "missing_field",
    "unknown_event_type": segment.UNMAPPED,
}
MAX_CLOCK_OFFSET_MS = 15 * 60_000
UNKNOWN_CALLS = ("telemetry", "debug", "heartbeat_v0")
_LIBRARY = {"web": "analytics.js", "ios": "analytics-ios", "android": "analytics-android",
            "tv": "analytics-kotlin"}  # fmt: skip
_FIELDS = ("title_id", "playback_id", "position_s", "duration_s", "from_position_s")


def clock_offsets(seed: int, n_devices: int) -> np.ndarray:
    """Each device's clock minus the server's, in ms (a seeded stream of its own)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))
    return rng.integers(-MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS + 1, n_devices)


def _property_path(path: str, what: str) -> str:
    if not path.startswith("properties.") or path.count(".") != 1:
        raise segment.MappingError(f"{what} comes from {path!r}: the simulator writes properties.*")
    return path.split(".", 1)[1]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _properties_sql(event_type: str, entry: dict, raw: dict) -> str:
    """The call's ``properties`` object for one contract event type (nulls left out)."""
    fields_from = {**raw["fields_from"], **entry.get("fields_from", {})}
    parts = []
    for name in _FIELDS:
        if fields_from.get(name):
            parts += [_quote(_property_path(fields_from[name][0], name)), f"j->'{name}'"]
    if event_type in contract_rules.FAMILIES["player"]:
        for key in raw.get("player_properties", ()):
            parts += [_quote(key), f"j->'properties'->{_quote(key)}"]
    for contract_name, source in entry.get("properties", {}).items():
        parts += [_quote(source), f"j->'properties'->{_quote(contract_name)}"]
    return f"json_merge_patch('{{}}', json_object({', '.join(parts)}))"


def conversion_sql(mapping: segment.TrackerMapping) -> str:
    """The query turning table ``t`` (native ``line`` + time columns) into export lines."""
    raw = mapping.raw
    names: dict[str, tuple[str, dict]] = {}
    for name, entry in mapping.track.items():
        if entry is not None and entry["event_type"] not in names:
            names[entry["event_type"]] = (name, entry)
    missing = set(contract_rules.ALL_EVENT_TYPES) - set(names) - {"page_view"}
    if missing:
        raise segment.MappingError(f"no track event maps onto {sorted(missing)}")
    events = " ".join(f"when {_quote(et)} then {_quote(n)}" for et, (n, _) in names.items())
    props = " ".join(
        f"when {_quote(et)} then {_properties_sql(et, e, raw)}" for et, (_, e) in names.items()
    )
    page_props = _properties_sql("page_view", {}, raw)
    pages = {}
    for name, page in raw.get("page_names", {}).items():
        pages.setdefault(page, name)
    page_names = " ".join(f"when {_quote(p)} then {_quote(n)}" for p, n in pages.items())
    rule = raw["platform_from"][0]
    if rule["path"] != "context.device.type":
        raise segment.MappingError("the simulator writes the platform at context.device.type")
    device_types = {}
    for value, platform in rule["values"].items():
        device_types.setdefault(platform, value)
    types = " ".join(f"when {_quote(p)} then {_quote(v)}" for p, v in device_types.items())
    libraries = " ".join(f"when {_quote(p)} then {_quote(v)}" for p, v in _LIBRARY.items())
    for key, path in (("device_id_from", "anonymousId"), ("user_id_from", "userId")):
        if raw[key][0] != path:
            raise segment.MappingError(f"the simulator writes {key} at {path}")
    return f"""
        with p as (select i, line::json as j, * exclude (i, line) from t)
        select json_object(
            'type', if(j->>'event_type' = 'page_view', 'page', 'track'),
            'event', case j->>'event_type' {events} end,
            'name', case when j->>'event_type' = 'page_view' then
                        coalesce(case j->'properties'->>'page' {page_names} end,
                                 j->'properties'->>'page') end,
            'messageId', j->>'event_id',
            'anonymousId', j->>'device_id',
            'userId', j->>'user_id',
            'properties', case j->>'event_type' {props} else {page_props} end,
            'context', json_object(
                'device', json_object('type', case j->>'platform' {types} end),
                'app', json_object('version', j->>'app_version'),
                'location', json_object('country', j->>'country'),
                'library', json_object('name', case j->>'platform' {libraries} end)),
            'originalTimestamp', original_ts,
            'timestamp', j->>'occurred_at',
            'sentAt', sent_at,
            'receivedAt', j->>'received_at'
        )::varchar as line
        from p order by i
    """


def convert(
    native: pa.Array, original_ts: pa.Array, sent_at: pa.Array, sql: str
) -> pa.ChunkedArray:
    """Export lines (with their newline) of clean native lines, in order."""
    t = pa.table(  # noqa: F841 (read by the query)
        {
            "i": pa.array(np.arange(len(native), dtype=np.int64)),
            "line": native,
            "original_ts": original_ts,
            "sent_at": sent_at,
        }
    )
    con = duckdb.connect()
    try:
        # strip nulls left by json_object (no event on a page call, no name...)
        lines = con.sql(
            f"select json_merge_patch('{{}}', line)::varchar || chr(10) as line from ({sql})"
        ).to_arrow_table()
    finally:
        con.close()
    return lines.column("line").cast(pa.string())


_RE_ORIGINAL = re.compile(r'"originalTimestamp":"[^"]*"')
_RE_POSITION = re.compile(r'"position":[0-9.]+')
_RE_MESSAGE_ID = re.compile(r'"messageId":"[^"]*",')
_RE_ANONYMOUS_ID = re.compile(r'"anonymousId":"[^"]*",')
_RE_TYPE = re.compile(r'"type":"(track|page)"')


def corrupt(line: str, reason: str, u: float, epoch_s: int) -> str:
    """One defect per line (by the native line's reason), so the loader rejects it once."""
    body = line[:-1]
    if reason == "invalid_json":
        out = body[: 12 + int(u * max(1, len(body) - 14))]  # a strict prefix: never valid JSON
    elif reason == "wrong_occurred":
        out = _RE_ORIGINAL.sub(f'"originalTimestamp":{epoch_s}', body, count=1)
    elif reason == "wrong_position":
        out = _RE_POSITION.sub('"position":"abc"', body, count=1)
    elif reason == "no_event_id":
        out = _RE_MESSAGE_ID.sub("", body, count=1)
    elif reason == "no_device_id":
        out = _RE_ANONYMOUS_ID.sub("", body, count=1)
    else:
        out = _RE_TYPE.sub(f'"type":"{UNKNOWN_CALLS[int(u * len(UNKNOWN_CALLS))]}"', body, count=1)
    return out + "\n"
