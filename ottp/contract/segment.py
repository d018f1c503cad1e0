"""Segment/RudderStack tracking calls (and their Video Spec) mapped onto the event contract.

Pure functions over lists of dicts: :func:`map_messages` turns the messages of a
``/v1/batch`` body (or of a ``/v1/track``, ``/v1/page``... call) into contract
events, and says of every other message why it is skipped or rejected. The
collector (``ottp.realtime.segment_api``) hands the events to the same intake
path as ``POST /v1/events``, so the loader's rules decide whether they are valid.

What maps onto what is data, not code: ``segment_mapping.json`` next to this
module (a platform points ``OTTP_SEGMENT_MAPPING`` at its own copy). The mapping
copies values as sent, never coerces nor guesses one: a value of the wrong type
lands as it is and the loader rejects it with the field's name; a message that
no mapping entry names is rejected (``unmapped_event``); one the mapping maps to
null (buffering, ads, ``identify``...) is skipped (``no_contract_event``).

Times follow Segment's clock-skew correction: ``occurred_at = timestamp +
(receivedAt - sentAt)``, with ``receivedAt`` the collector's clock. The
``messageId`` is the event id (the deduplication key); one that is not a UUID
becomes a UUID5 of it, so a retry gets the same id. docs/segment.md has the table.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from ottp.contract import rules

DEFAULT_MAPPING_PATH = Path(__file__).with_name("segment_mapping.json")
SCHEMA_VERSION = "1.0"
# uuid5(NAMESPACE_URL, "ottp:segment:messageId"): the namespace of ids derived
# from messageIds that are not UUIDs (analytics.js sends "ajs-next-<hash>").
MESSAGE_ID_NAMESPACE = uuid.UUID("3a8e78e9-b842-596d-9ff3-46b108235938")
# Reason codes of this mapping, beside the loader's (docs/segment.md).
UNMAPPED = "unmapped_event"  # a call type or track event the mapping does not name
NO_CONTRACT_EVENT = "no_contract_event"  # named, deliberately without a contract event
# Calls without a contract event: the link identify states rides on every later
# event (userId + anonymousId); the contract has no identity, group or alias event.
SKIPPED_CALLS = {
    "identify": "identify: the contract has no identity event; later events carry userId",
    "group": "group: the contract has no account-group event",
    "alias": "alias: the contract has no alias event",
}
CALL_TYPES = ("track", "page", "screen", *SKIPPED_CALLS)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_TIME = re.compile("^" + rules.DATE_TIME_PATTERN + "$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PLAYER = frozenset(rules.FAMILIES["player"])
_WITH_TITLE = frozenset(("title_click", "page_view", *rules.FAMILIES["interest"]))


class MappingError(ValueError):
    """The mapping file names something the contract does not have."""


@dataclass(frozen=True)
class Outcome:
    """One message's fate: a contract ``event``, or why there is none.

    ``status`` is ``mapped``, ``skipped`` (nothing to map, not an error) or
    ``rejected``; ``reason`` starts with ``reason_code`` and names the field.
    """

    index: int
    message_id: object
    status: str
    event: dict | None = None
    reason_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TrackerMapping:
    """A parsed mapping file (see ``segment_mapping.json``)."""

    raw: dict = field(repr=False)

    @property
    def track(self) -> dict:
        return self.raw["track"]


class _Reject(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, f"{code}: {reason}"


def load_mapping(path: Path | None = None) -> TrackerMapping:
    """The mapping file (the default one when ``path`` is None), checked against the contract."""
    return _default_mapping() if path is None else _load_mapping(path)


def configured_mapping() -> TrackerMapping:
    """The mapping the collector uses: ``OTTP_SEGMENT_MAPPING``'s file, else the default."""
    from ottp import config  # config reads the environment; this module stays pure otherwise

    return load_mapping(config.realtime_settings().segment_mapping)


@cache
def _default_mapping() -> TrackerMapping:
    return _load_mapping(DEFAULT_MAPPING_PATH)


def _load_mapping(path: Path) -> TrackerMapping:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    needed = {"device_id_from", "user_id_from", "platform_from", "fields_from", "track"}
    if missing := needed - set(raw):
        raise MappingError(f"{path}: missing keys {sorted(missing)}")
    for name, entry in raw["track"].items():
        if entry is None:
            continue
        if not isinstance(entry, dict) or entry.get("event_type") not in rules.ALL_EVENT_TYPES:
            raise MappingError(
                f"{path}: {name!r} maps to {entry.get('event_type')!r}, not a contract event type"
            )
    for rule in raw["platform_from"]:
        if bad := set(rule["values"].values()) - set(rules.PLATFORMS):
            raise MappingError(f"{path}: platforms {sorted(bad)} are not {rules.PLATFORMS}")
    if raw.get("platform_default") not in (None, *rules.PLATFORMS):
        raise MappingError(f"{path}: platform_default is not one of {rules.PLATFORMS}")
    return TrackerMapping(raw)


# ------------------------------------------------------------------ values


def _get(message: Mapping, path: str) -> object:
    """The value at a dotted path (``context.device.type``), None when absent."""
    value: object = message
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _first(message: Mapping, paths: Sequence[str]) -> tuple[str | None, object]:
    """The first path holding a value (not null, not ""), and the value."""
    for path in paths:
        value = _get(message, path)
        if value is not None and value != "":
            return path, value
    return None, None


def _stamp(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: the contract's timestamp form."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise _Reject("wrong_type", f"{name} is not a string")
    if not _DATE_TIME.match(value):
        raise _Reject("wrong_type", f"{name} is not an RFC 3339 timestamp with an offset")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _Reject("wrong_type", f"{name} is not a timestamp") from None


def occurred_at(message: Mapping, received_at: datetime, batch_sent_at: object = None) -> str:
    """``timestamp + (receivedAt - sentAt)``: the client's clock moved onto the collector's.

    The client's clock is ``timestamp``, or ``originalTimestamp`` (RudderStack's
    browser SDK). Without ``sentAt`` (in the message or the batch) it is taken
    as sent; without either field the event happened when it was received, as
    Segment does.
    """
    name = "timestamp" if message.get("timestamp") is not None else "originalTimestamp"
    if message.get(name) is None:
        return _stamp(received_at)
    stamp = _parse_time(message[name], name)
    sent = message.get("sentAt", batch_sent_at)
    try:
        if sent is not None:
            stamp = stamp + (received_at - _parse_time(sent, "sentAt"))
        return _stamp(stamp)
    except (OverflowError, ValueError):
        raise _Reject(
            "timestamp_out_of_range", "timestamp corrected by sentAt is out of range"
        ) from None


def event_id(message_id: object) -> str:
    """The contract's event id: the messageId when it is a UUID, else its UUID5."""
    if message_id is None or message_id == "":
        raise _Reject("missing_field", "event_id (messageId)")
    if not isinstance(message_id, str):
        raise _Reject("wrong_type", "event_id (messageId) is not a string")
    if _UUID.match(message_id):
        return message_id
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, message_id))


def _platform(message: Mapping, mapping: TrackerMapping) -> str:
    for rule in mapping.raw["platform_from"]:
        value = _get(message, rule["path"])
        if isinstance(value, str) and value in rule["values"]:
            return rule["values"][value]
    if mapping.raw.get("platform_default"):
        return mapping.raw["platform_default"]
    paths = ", ".join(rule["path"] for rule in mapping.raw["platform_from"])
    raise _Reject("missing_field", f"platform (no known value at {paths})")


def _title_id(value: object, path: str | None) -> object:
    """A list of ids (``content_asset_ids``) names a title only when it holds one."""
    if isinstance(value, list):
        if len(value) != 1:
            raise _Reject("invalid_value", f"title_id ({path}) holds {len(value)} ids, not one")
        return value[0]
    return value


# ------------------------------------------------------------------ events


def _common(
    message: Mapping, mapping: TrackerMapping, received_at: datetime, sent_at: object
) -> dict:
    """The fields every contract event has, from the message's ids, context and times."""
    raw = mapping.raw
    _, device = _first(message, raw["device_id_from"])
    if device is None:
        raise _Reject("missing_field", "device_id (" + " or ".join(raw["device_id_from"]) + ")")
    _, user = _first(message, raw["user_id_from"])
    _, country = _first(message, raw.get("country_from", ()))
    _, app_version = _first(message, raw.get("app_version_from", ()))
    return {
        "event_id": event_id(message.get("messageId")),
        "schema_version": SCHEMA_VERSION,
        "occurred_at": occurred_at(message, received_at, sent_at),
        "received_at": _stamp(received_at),
        "user_id": user,
        "device_id": device,
        "platform": _platform(message, mapping),
        "app_version": app_version,
        # Segment's location.country is often a name ("France"): only an ISO code is kept
        "country": country if isinstance(country, str) and _COUNTRY.match(country) else None,
    }


def top_level_fields(event_type: str) -> tuple[str, ...]:
    """The top-level fields ``fields_from`` fills for an event type, in order."""
    if event_type in _PLAYER:
        wanted = ("playback_id", "title_id", "position_s", "duration_s")
        return wanted + (("from_position_s",) if event_type == "seek" else ())
    return ("title_id",) if event_type in _WITH_TITLE else ()


def keeps_player_properties(event_type: str) -> bool:
    """Whether ``player_properties`` are copied into the event's ``properties``."""
    return event_type in _PLAYER


def _fields(message: Mapping, event_type: str, fields_from: Mapping) -> dict:
    """Top-level player and title fields, as sent (the loader judges their types)."""
    out = {}
    for name in top_level_fields(event_type):
        path, value = _first(message, fields_from.get(name, ()))
        if value is not None:
            out[name] = _title_id(value, path) if name == "title_id" else value
    return out


def _track(message: Mapping, mapping: TrackerMapping) -> tuple[str, dict, dict | None]:
    """(event_type, top-level fields, properties) of a track call."""
    name = message.get("event")
    if not isinstance(name, str) or not name:
        raise _Reject("missing_field", "event (the track call's name)")
    if name not in mapping.track:
        raise _Reject(UNMAPPED, f"track event {name!r} is not in the mapping")
    entry = mapping.track[name]
    if entry is None:
        raise _Reject(NO_CONTRACT_EVENT, f"track event {name!r} has no contract event")
    event_type = entry["event_type"]
    fields_from = {**mapping.raw["fields_from"], **entry.get("fields_from", {})}
    top = _fields(message, event_type, fields_from)
    props = message.get("properties") if isinstance(message.get("properties"), Mapping) else {}
    keep = {k: props[k] for k in mapping.raw.get("player_properties", ()) if k in props}
    if not keeps_player_properties(event_type):
        keep = {}
    for contract_name, source in entry.get("properties", {}).items():
        if source in props:
            keep[contract_name] = props[source]
    return event_type, top, keep or None


def _page(message: Mapping, mapping: TrackerMapping) -> tuple[str, dict, dict | None]:
    """A page or screen call: a ``page_view`` named after the call's name."""
    name = message.get("name")
    top = _fields(message, "page_view", mapping.raw["fields_from"])
    if name is None:
        return "page_view", top, None
    page = mapping.raw.get("page_names", {}).get(name, name) if isinstance(name, str) else name
    return "page_view", top, {"page": page}


def map_message(
    message: object,
    mapping: TrackerMapping,
    received_at: datetime,
    batch_sent_at: object = None,
    index: int = 0,
) -> Outcome:
    """One tracking call's fate: a contract event, or why it has none."""
    if not isinstance(message, Mapping):
        return Outcome(index, None, "rejected", None, "not_an_object", "not_an_object: message")
    message_id = message.get("messageId")
    call = message.get("type")
    call = call if isinstance(call, str) else None  # a list or an object names no call
    try:
        if call in SKIPPED_CALLS:
            raise _Reject(NO_CONTRACT_EVENT, SKIPPED_CALLS[call])
        if call == "track":
            event_type, top, props = _track(message, mapping)
        elif call in ("page", "screen"):
            event_type, top, props = _page(message, mapping)
        else:
            shown = repr(call) if isinstance(call, str) else "missing"
            raise _Reject(UNMAPPED, f"call type {shown[:40]} is not one of {', '.join(CALL_TYPES)}")
        common = _common(message, mapping, received_at, batch_sent_at)
    except _Reject as exc:
        status = "skipped" if exc.code == NO_CONTRACT_EVENT else "rejected"
        return Outcome(index, message_id, status, None, exc.code, exc.reason)
    event = {**common, "event_type": event_type, **top, "properties": props}
    return Outcome(index, message_id, "mapped", event)


def map_messages(
    messages: Sequence[object],
    received_at: datetime,
    batch_sent_at: object = None,
    mapping: TrackerMapping | None = None,
) -> list[Outcome]:
    """Every message's fate, in order; ``received_at`` is the collector's clock (aware, UTC)."""
    mapping = mapping or load_mapping()
    return [map_message(m, mapping, received_at, batch_sent_at, i) for i, m in enumerate(messages)]


# ------------------------------------------------------------------ stored calls


def _received_time(message: Mapping) -> datetime:
    """``receivedAt`` of a stored call: the destination's server clock, required."""
    value = message.get("receivedAt")
    if value is None or value == "":
        raise _Reject("missing_field", "received_at (receivedAt)")
    return _parse_time(value, "receivedAt")


def map_stored_message(message: object, mapping: TrackerMapping, index: int = 0) -> Outcome:
    """A call as Segment's and RudderStack's storage destinations write it (one per line).

    Those exports hold what the SDK sent plus the destination's own fields:
    ``receivedAt`` (their server's clock) and ``timestamp`` already corrected,
    with the SDK's own clock moved to ``originalTimestamp``. The call is mapped
    as the collector maps it (:func:`map_message`) with ``receivedAt`` as the
    receipt time and the client's clock as the time sent: ``originalTimestamp``
    when the line has one (``timestamp`` is then left out, never corrected
    twice), else ``timestamp``. So ``occurred_at = originalTimestamp +
    (receivedAt - sentAt)``, the collector's correction, which is also the
    export's own ``timestamp``. A line without a valid ``receivedAt`` is rejected.
    """
    if not isinstance(message, Mapping):
        return Outcome(index, None, "rejected", None, "not_an_object", "not_an_object: message")
    try:
        received = _received_time(message)
    except _Reject as exc:
        return Outcome(index, message.get("messageId"), "rejected", None, exc.code, exc.reason)
    if message.get("originalTimestamp") is not None and "timestamp" in message:
        message = {k: v for k, v in message.items() if k != "timestamp"}
    return map_message(message, mapping, received, None, index)
