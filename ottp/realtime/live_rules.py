"""The batch models' session and play rules, for a live stream of events.

One source for the rule values: the dbt project's vars (``dbt_project/dbt_project.yml``),
read by :func:`load_rules`; the serving bundle carries the same vars, and
:func:`rules_from` builds the rules from such a mapping.

What applies live, and how it matches the batch:

- **Actor** (``int_sessions.actor_id``): the user_id, or ``device:<device_id>`` for an
  anonymous visitor.
- **Sessions** (``int_sessions``): the navigation, player and interest events of an
  actor (account and survey events are in no session); a new session starts after
  more than ``session_gap_minutes`` without an event (exactly the gap keeps it). The
  session id is the batch's: md5 of ``<actor_id>|<started_at in epoch microseconds>``.
  Applied in occurred_at order, the live sessions are the batch's. A late event
  (occurred before the current session) joins the current session when it is within
  the gap of its start (the start moves, and so does the id, as in the batch); an
  event older than that belongs to a session the live state no longer holds: it still
  counts for titles and plays, but not for sessions, and the batch places it.
- **Plays** (``int_plays``): one :class:`PlaybackState` per playback_id. Events are
  coded as the batch codes them (play_start 1, resume 2, heartbeat 3, seek 4, pause 5,
  complete 6, else 7) and ordered by (occurred_at, code, position_s). The state keeps
  every state change (all but heartbeats, a few percent of the events), the first and
  the last event, the furthest position reached (a seek reaches its
  from_position_s) and whether a complete event came, so ``played_s`` is computed
  with the batch's stretches: between two state changes (and from a synthetic
  opening when a playback opens with a heartbeat, up to a closing at its last event)
  the playhead's move, capped by the wall-clock time, never negative, and zero for a
  stretch that ends at a resume after a seek, pause, complete or stop. This is
  independent of arrival order: a late or resent event gives the batch's result.
  Only a playback with more than :data:`MAX_CHANGES` state changes differs: its
  oldest stretches are folded into a sum, and a late event older than the fold
  point no longer changes them.
- **Validity and completion**: ``played_s >= valid_play_min_s``; complete with a
  complete event or a furthest position of at least ``complete_min_pct`` of the
  duration (the largest duration_s seen).
- **Continue watching** (``continue_watching``): the latest valid play of a title, not
  complete, with a last position of at least ``continue_watching_min_position_s``.
  The batch also leaves out deleted users and unavailable titles: the profile, which
  knows them from the bundle, applies those two.

The staging models' input assumptions are kept too: an event without the fields
its family's staging model requires (a player event without user_id, playback_id,
title_id, position_s or duration_s; an interest event without user_id or title_id)
is ignored, as the batch quarantines it. The loader's checks run before
(``ottp.ingest.validate``, shared with the intake).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ottp import config
from ottp.contract.rules import FAMILIES

# The dbt vars the live rules read.
RULE_VARS = (
    "session_gap_minutes",
    "valid_play_min_s",
    "complete_min_pct",
    "heartbeat_interval_s",
    "continue_watching_min_position_s",
)

# int_plays.coded_events: the order a player emits same-instant events in.
EVENT_CODES = {
    "play_start": 1,
    "resume": 2,
    "heartbeat": 3,
    "seek": 4,
    "pause": 5,
    "complete": 6,
}
OTHER_PLAYER_CODE = 7
HEARTBEAT = 3
RESUME = 2
# int_plays.state_changes: the closing stretch's code sorts after every event's.
CLOSING_CODE = 9

FAMILY_OF = {event_type: family for family, types in FAMILIES.items() for event_type in types}
# int_sessions.activity_events: the families a session is made of.
SESSION_FAMILIES = frozenset({"navigation", "player", "interest"})
# Staging input assumptions (dbt_project/macros/quarantine.sql) beyond the contract's.
_REQUIRED = {
    "player": ("user_id", "playback_id", "title_id", "position_s", "duration_s"),
    "interest": ("user_id", "title_id"),
    "navigation": (),
    "account": ("user_id",),
    "survey": ("user_id",),
}
MAX_POSITION_S = 86400.0
# State changes kept per playback before the oldest are folded into a sum.
MAX_CHANGES = 200

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class LiveRules:
    """The rule values: dbt vars of the same names."""

    session_gap_minutes: float
    valid_play_min_s: float
    complete_min_pct: float
    heartbeat_interval_s: float
    continue_watching_min_position_s: float

    @property
    def session_gap_s(self) -> float:
        return self.session_gap_minutes * 60


def rules_from(values: Mapping[str, Any]) -> LiveRules:
    """The rules from a mapping of dbt vars (the project's, or a serving bundle's)."""
    missing = [name for name in RULE_VARS if values.get(name) is None]
    if missing:
        raise ValueError(f"rule values missing: {', '.join(missing)}")
    return LiveRules(**{f.name: float(values[f.name]) for f in fields(LiveRules)})


def load_rules(project_dir: Path | None = None) -> LiveRules:
    """The rules as ``dbt_project.yml`` sets them (its ``vars``)."""
    path = Path(project_dir or config.DBT_PROJECT_DIR) / "dbt_project.yml"
    project = yaml.safe_load(path.read_text(encoding="utf-8"))
    return rules_from(project.get("vars") or {})


def parse_time_us(value: Any) -> int | None:
    """Epoch microseconds of an ISO-8601 text or a datetime (naive: UTC); None if neither."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.upper())
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def time_of(us: int) -> datetime:
    """A UTC datetime from epoch microseconds."""
    return _EPOCH + timedelta(microseconds=us)


def seconds(us: int) -> float:
    """Epoch seconds as a double, as the models' epoch() gives them."""
    return us / 1_000_000


def actor_id_of(event: Mapping[str, Any]) -> str | None:
    """int_sessions' actor: the user, or ``device:<device_id>`` for an anonymous visitor."""
    user_id = event.get("user_id")
    if user_id:
        return str(user_id)
    device_id = event.get("device_id")
    return f"device:{device_id}" if device_id else None


def session_id(actor_id: str, started_us: int) -> str:
    """int_sessions.session_id: md5 of ``<actor_id>|<started_at epoch microseconds>``."""
    return hashlib.md5(f"{actor_id}|{started_us}".encode()).hexdigest()


def event_code(event_type: str) -> int:
    """int_plays' code of a player event (0 for other families: they sort first)."""
    if FAMILY_OF.get(event_type) != "player":
        return 0
    return EVENT_CODES.get(event_type, OTHER_PLAYER_CODE)


def meets_assumptions(event: Mapping[str, Any], family: str) -> bool:
    """The staging model's input assumptions for this event's family."""
    for name in _REQUIRED.get(family, ()):
        if event.get(name) is None:
            return False
    if family == "player":
        for name in ("position_s", "duration_s", "from_position_s"):
            value = event.get(name)
            if value is not None and (
                not isinstance(value, int | float) or value < 0 or value > MAX_POSITION_S
            ):
                return False
        if event["duration_s"] <= 0:
            return False
    return True


def gap_exceeded(earlier_us: int, later_us: int, rules: LiveRules) -> bool:
    """int_sessions.is_session_start: more than the gap between two events."""
    return seconds(later_us) - seconds(earlier_us) > rules.session_gap_s


class PlaybackState:
    """One playback's facts, enough to give int_plays' values in any arrival order.

    ``changes`` holds the state changes as [at_us, code, position_s, reached_s],
    sorted; ``first`` and ``last`` are the (at_us, code, position_s) keys of the
    first and last event; ``folded_s`` is the play time of stretches folded away.
    """

    __slots__ = (
        "title_id",
        "duration_s",
        "started_us",
        "ended_us",
        "first",
        "last",
        "first_change_us",
        "furthest_s",
        "has_complete_event",
        "changes",
        "folded_s",
        "was_valid",
        "was_complete",
    )

    def __init__(self, title_id: str) -> None:
        self.title_id = title_id
        self.duration_s = 0.0
        self.started_us: int | None = None
        self.ended_us: int | None = None
        self.first: list | None = None
        self.last: list | None = None
        self.first_change_us: int | None = None
        self.furthest_s = 0.0
        self.has_complete_event = False
        self.changes: list[list] = []
        self.folded_s: float | None = None
        # set once: a LiveChange is reported the first time only
        self.was_valid = False
        self.was_complete = False

    def add(self, at_us: int, code: int, event: Mapping[str, Any]) -> None:
        """Take in one player event."""
        position = event["position_s"]
        reached = event.get("from_position_s") if code == 4 else position
        if reached is None:  # a seek without from_position_s: its own position
            reached = position
        self.duration_s = max(self.duration_s, event["duration_s"])
        self.furthest_s = max(self.furthest_s, reached)
        key = [at_us, code, position]
        if self.first is None or key < self.first:
            self.first = key
            self.started_us = at_us
        if self.last is None or key > self.last:
            self.last = key
            self.ended_us = at_us
        if code == 6:
            self.has_complete_event = True
        if code != HEARTBEAT:
            if self.first_change_us is None or at_us < self.first_change_us:
                self.first_change_us = at_us
            bisect.insort(self.changes, [at_us, code, position, reached])
            if len(self.changes) > MAX_CHANGES:
                self._fold()

    def _sequence(self) -> list[list]:
        """int_plays.state_changes: the opening (if any), the changes, the closing."""
        sequence = []
        opens_with_heartbeat = (
            self.first_change_us is None or self.first_change_us > self.started_us
        )
        if self.folded_s is None and opens_with_heartbeat:
            position = self.first[2]
            sequence.append([self.started_us, HEARTBEAT, position, position])
        sequence.extend(self.changes)
        last_position = self.last[2]
        sequence.append([self.ended_us, CLOSING_CODE, last_position, last_position])
        return sequence

    def _fold(self) -> None:
        """Sum the stretches of the older half of the changes; the rest go on from there."""
        sequence = self._sequence()[:-1]
        keep_from = len(sequence) // 2
        self.folded_s = (self.folded_s or 0.0) + _stretches(sequence[: keep_from + 1])
        self.changes = sequence[keep_from:]

    @property
    def played_s(self) -> float:
        """int_plays.played_s."""
        return (self.folded_s or 0.0) + _stretches(self._sequence())

    @property
    def last_position_s(self) -> float:
        return self.last[2]

    @property
    def furthest_pct(self) -> float | None:
        return min(self.furthest_s / self.duration_s, 1.0) if self.duration_s else None

    def is_valid(self, rules: LiveRules) -> bool:
        return self.played_s >= rules.valid_play_min_s

    def is_complete(self, rules: LiveRules) -> bool:
        return (
            self.has_complete_event or self.furthest_s >= rules.complete_min_pct * self.duration_s
        )

    def to_list(self) -> list:
        """A compact JSON form (the Redis backend stores it)."""
        return [
            self.title_id,
            self.duration_s,
            self.first,
            self.last,
            self.first_change_us,
            self.furthest_s,
            int(self.has_complete_event),
            self.changes,
            self.folded_s,
            int(self.was_valid) | int(self.was_complete) << 1,
        ]

    @classmethod
    def from_list(cls, data: list) -> PlaybackState:
        state = cls(data[0])
        (state.duration_s, state.first, state.last, state.first_change_us) = data[1:5]
        state.furthest_s, state.changes, state.folded_s = data[5], data[7], data[8]
        state.has_complete_event = bool(data[6])
        state.was_valid, state.was_complete = bool(data[9] & 1), bool(data[9] & 2)
        state.started_us = state.first[0] if state.first else None
        state.ended_us = state.last[0] if state.last else None
        return state


def _stretches(sequence: list[list]) -> float:
    """int_plays.play_time over ordered state changes [at_us, code, position, reached]."""
    total = 0.0
    for current, following in zip(sequence, sequence[1:], strict=False):
        if following[1] == RESUME and current[1] >= 4:
            continue  # it was paused: a position change is a seek, never play
        moved = following[3] - current[2]
        elapsed = seconds(following[0]) - seconds(current[0])
        total += max(min(moved, elapsed), 0)
    return total
