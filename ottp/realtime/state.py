"""Live state per actor: the current session, titles browsed, clicked, played, liked and
disliked, and watch progress, updated by each accepted batch of events.

:func:`open_state` gives the embedded in-process state (:class:`MemoryState`), or
with a Redis URL the shared one (``ottp.realtime.redis_state``), which falls back to
memory while Redis is away. Both run the same code on the same :class:`ActorState`
(the rules are ``ottp.realtime.live_rules``, the batch models' rules), so they give
the same :class:`ActorView`. :func:`rebuild_from_landing` refills a state from the
landing files of the last hours, with the loader's own validation.

``apply`` is the hot path: per request, O(events) Python over the batch (sorted by
occurred_at), no warehouse query. It returns the :class:`LiveChange` list of what
changed for the first time (a play became valid or complete, a like, a session
start), for the triggers downstream. A resent event (a client's retry, the same
event_id) is ignored: each actor keeps the 8-byte digests of its last
:data:`SEEN_IDS` event_ids, so it is not counted again in the session's
``event_count``. One resent after that many newer events of the actor is applied
again: it changes no title, play or reaction (they are sets, latest-wins or
order-independent), only ``event_count`` when it falls in the current session.
"""

from __future__ import annotations

import abc
import base64
import bisect
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ottp.realtime import live_rules as lr
from ottp.realtime.live_rules import LiveRules, PlaybackState

logger = logging.getLogger(__name__)

# Per actor: titles browsed or clicked kept (most recent), playbacks kept in full
# (older ones are folded into per-title counts and their latest facts).
MAX_TITLES = 200
MAX_PLAYBACKS = 60
# An actor with no event for this long is forgotten (Redis: the key's TTL).
STATE_TTL_S = 3 * 24 * 3600
# Per actor: the event_ids of its last SEEN_IDS events applied, as 8-byte digests
# (a resent one is ignored; a new id matches one of them with odds of 2^-56).
SEEN_IDS = 256
DIGEST_BYTES = 8
# Events applied per call while rebuilding from landing files.
REBUILD_CHUNK = 5000
# Per actor, for the current session only (both reset when a new session starts):
# titles whose impressions are counted (the most recently shown kept), and the
# interactions kept in order (the most recent kept).
MAX_SESSION_IMPRESSIONS = 300
MAX_SESSION_INTERACTIONS = 50
# The titles of one rail_impression taken in (a rail longer than this counts its first ones).
MAX_RAIL_TITLES = 100
# Session interaction kinds, by event type (a playback is one "play", at its first event).
INTERACTION_KINDS = {
    "page_view": "browse",
    "title_click": "click",
    "like": "like",
    "dislike": "dislike",
    "add_to_watchlist": "watchlist",
    "rating": "rating",
}


@dataclass(frozen=True)
class LiveChange:
    """Something that became true for the first time: what triggers react to.

    kind: ``session_start``, ``valid_play``, ``play_complete``, ``liked``,
    ``disliked`` or ``state_deleted`` (a deletion request dropped the actor's state).
    """

    kind: str
    actor_id: str
    user_id: str | None
    title_id: str | None
    occurred_at: datetime
    playback_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class SessionView:
    session_id: str
    started_at: datetime
    last_event_at: datetime
    event_count: int


@dataclass(frozen=True)
class TitleProgress:
    """Watch progress on one title: its latest playback, and the counts over all.

    position_s, pct (furthest position over duration, capped at 1, as
    int_plays.furthest_pct), played_s, is_valid_play and is_complete are the latest
    playback's; resume_position_s is set when the title is in continue-watching (the
    latest valid play is not complete and is past continue_watching_min_position_s).
    """

    title_id: str
    playback_id: str
    position_s: float
    duration_s: float
    pct: float | None
    played_s: float
    is_valid_play: bool
    is_complete: bool
    started_at: datetime
    last_watched_at: datetime
    valid_play_count: int
    complete_count: int
    resume_position_s: float | None
    resume_watched_at: datetime | None


@dataclass(frozen=True)
class SessionInteraction:
    """One thing the actor did with a title in the current session.

    kind: ``browse`` (a page_view of the title), ``click`` (title_click), ``play`` (a
    playback, at its first event), ``complete`` (the playback became complete),
    ``like``, ``dislike``, ``watchlist`` (add_to_watchlist), ``rating``.
    """

    kind: str
    title_id: str
    at: datetime
    # a rating's stars (properties.rating, 1 to 5); None for every other kind
    value: float | None = None


@dataclass(frozen=True)
class TitleImpressions:
    """How often a title was shown on rails in the current session (rail_impression's
    ``properties.title_ids``), and whether the viewer took it up after the first time:
    a title_click of it, or a playback of it started, at or after its first impression."""

    title_id: str
    count: int
    first_at: datetime
    last_at: datetime
    clicked: bool


@dataclass(frozen=True)
class ActorView:
    """What the live state knows of one actor (titles most recent first).

    ``session_interactions`` (oldest first), ``impressions`` and ``current_title`` are
    the current session's: ``current_title`` is the title of the session's latest
    playback (by its last event), None when nothing was played in this session.
    """

    actor_id: str
    user_id: str | None
    session: SessionView | None
    session_count: int
    last_event_at: datetime | None
    browsed: tuple[str, ...]
    clicked: tuple[str, ...]
    played: tuple[str, ...]
    liked: tuple[str, ...]
    disliked: tuple[str, ...]
    progress: Mapping[str, TitleProgress]
    session_interactions: tuple[SessionInteraction, ...] = ()
    impressions: Mapping[str, TitleImpressions] = field(default_factory=dict)
    current_title: str | None = None

    @property
    def validly_played(self) -> frozenset[str]:
        return frozenset(t for t, p in self.progress.items() if p.valid_play_count)


# A playback's facts kept after it is folded away or shown: started_us, playback_id,
# position_s, duration_s, pct, ended_us, played_s, is_valid, is_complete.
def _snapshot(playback_id: str, playback: PlaybackState, rules: LiveRules) -> list:
    return [
        playback.started_us,
        playback_id,
        playback.last_position_s,
        playback.duration_s,
        playback.furthest_pct,
        playback.ended_us,
        playback.played_s,
        playback.is_valid(rules),
        playback.is_complete(rules),
    ]


class ActorState:
    """One actor's live state; ``to_dict``/``from_dict`` give the stored (JSON) form.

    session is [started_us, last_us, event_count]; browsed and clicked map a title to
    its latest time; reactions map a title to [like|dislike, at_us, event_id];
    folded maps a title to [valid_count, complete_count, latest snapshot, latest
    valid snapshot] of the playbacks folded away; seen holds the digests of the
    last event_ids applied, oldest first (stored as base64). For the current session
    only: impressions map a title to [count, first_us, last_us] of its rail
    impressions, and interactions hold [at_us, kind, title_id, rating or None], sorted.
    """

    __slots__ = (
        "actor_id",
        "user_id",
        "session",
        "session_count",
        "browsed",
        "clicked",
        "reactions",
        "playbacks",
        "folded",
        "seen",
        "impressions",
        "interactions",
    )

    def __init__(self, actor_id: str) -> None:
        self.actor_id = actor_id
        self.user_id: str | None = None
        self.session: list | None = None
        self.session_count = 0
        self.browsed: dict[str, int] = {}
        self.clicked: dict[str, int] = {}
        self.reactions: dict[str, list] = {}
        self.playbacks: dict[str, PlaybackState] = {}
        self.folded: dict[str, list] = {}
        self.seen = b""
        self.impressions: dict[str, list] = {}
        self.interactions: list[list] = []

    def to_dict(self) -> dict:
        return {
            "a": self.actor_id,
            "u": self.user_id,
            "s": self.session,
            "n": self.session_count,
            "b": self.browsed,
            "c": self.clicked,
            "r": self.reactions,
            "p": {pid: p.to_list() for pid, p in self.playbacks.items()},
            "f": self.folded,
            "e": base64.b64encode(self.seen).decode("ascii"),
            "i": self.impressions,
            "x": self.interactions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActorState:
        state = cls(data["a"])
        state.user_id, state.session, state.session_count = data["u"], data["s"], data["n"]
        state.browsed, state.clicked, state.reactions = data["b"], data["c"], data["r"]
        state.playbacks = {pid: PlaybackState.from_list(p) for pid, p in data["p"].items()}
        state.folded = data["f"]
        # a state stored before event_ids were kept has none
        state.seen = base64.b64decode(data.get("e") or "")
        # nor the session's impressions and interactions
        state.impressions = data.get("i") or {}
        state.interactions = data.get("x") or []
        return state


# ---------------------------------------------------------------------------
# Applying events


# A prepared event: (at_us, code, arrival index, family, actor_id, event).
Prepared = tuple[int, int, int, str, str, Mapping[str, Any]]


def prepare(events: Sequence[Mapping[str, Any]]) -> dict[str, list[Prepared]]:
    """The usable events by actor, each actor's in (occurred_at, player code) order."""
    by_actor: dict[str, list[Prepared]] = {}
    for index, event in enumerate(events):
        event_type = event.get("event_type")
        family = lr.FAMILY_OF.get(event_type)
        at_us = lr.parse_time_us(event.get("occurred_at"))
        actor_id = lr.actor_id_of(event)
        if family is None or at_us is None or actor_id is None:
            continue
        if not lr.meets_assumptions(event, family):
            continue
        by_actor.setdefault(actor_id, []).append(
            (at_us, lr.event_code(event_type), index, family, actor_id, event)
        )
    for prepared in by_actor.values():
        prepared.sort(key=lambda p: (p[0], p[1], p[2]))
    return by_actor


def apply_to_actor(
    state: ActorState | None,
    actor_id: str,
    prepared: Sequence[Prepared],
    rules: LiveRules,
    changes: list[LiveChange],
) -> ActorState | None:
    """Apply one actor's prepared events; the new state (None: deleted)."""
    for at_us, code, _, family, _, event in prepared:
        event_type = event["event_type"]
        if family == "account":
            if event_type == "deletion_request" and state is not None:
                state = None
                changes.append(LiveChange("state_deleted", actor_id, None, None, lr.time_of(at_us)))
            continue
        if family not in lr.SESSION_FAMILIES:
            continue
        if state is None:
            state = ActorState(actor_id)
        digest = event_digest(event)
        if digest is not None:
            if _has_seen(state.seen, digest):
                continue  # a resent event: applied already
            state.seen = (state.seen + digest)[-SEEN_IDS * DIGEST_BYTES :]
        if event.get("user_id"):
            state.user_id = str(event["user_id"])
        in_session = _session_step(state, at_us, rules, changes)
        title_id = event.get("title_id")
        if family == "player":
            _player_step(state, at_us, code, event, rules, changes, in_session)
        elif event_type == "rail_impression":
            if in_session:
                _impression_step(state, at_us, event)
            continue
        elif family == "interest" and event_type in ("like", "dislike"):
            _reaction_step(state, at_us, event, changes)
        elif title_id and event_type == "page_view":
            _remember(state.browsed, str(title_id), at_us)
        elif title_id and event_type == "title_click":
            _remember(state.clicked, str(title_id), at_us)
        kind = INTERACTION_KINDS.get(event_type)
        if in_session and kind is not None and title_id:
            _interact(
                state, at_us, kind, str(title_id), _rating(event) if kind == "rating" else None
            )
    return state


def event_digest(event: Mapping[str, Any]) -> bytes | None:
    """The 8-byte digest of the event's id, one per UUID whatever its spelling
    (the loader casts event_id to uuid: upper case and lower case are one id)."""
    event_id = event.get("event_id")
    if event_id is None:
        return None
    text = str(event_id)
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        text = text.lower()
    else:
        try:
            text = str(uuid.UUID(text))
        except ValueError:
            pass  # not a UUID (never after the loader's checks): its own text
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest()


def _has_seen(seen: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of the digests in ``seen`` (aligned, not straddling two)."""
    at = seen.find(digest)
    while at != -1:
        if at % DIGEST_BYTES == 0:
            return True
        at = seen.find(digest, at + 1)
    return False


def _session_step(state: ActorState, at_us: int, rules: LiveRules, changes: list) -> bool:
    """int_sessions' gap rule for one more event (see live_rules for late events);
    whether the event is in the current session."""
    session = state.session
    if session is None or lr.gap_exceeded(session[1], at_us, rules):
        state.session = [at_us, at_us, 1]
        state.session_count += 1
        state.impressions = {}
        state.interactions = []
        changes.append(
            LiveChange(
                "session_start",
                state.actor_id,
                state.user_id,
                None,
                lr.time_of(at_us),
                session_id=lr.session_id(state.actor_id, at_us),
            )
        )
    elif at_us < session[0]:
        if lr.gap_exceeded(at_us, session[0], rules):
            return False
        session[0] = at_us
        session[2] += 1
    else:
        session[1] = max(session[1], at_us)
        session[2] += 1
    return True


def rail_titles(event: Mapping[str, Any]) -> list[str]:
    """A rail_impression's titles: ``properties.title_ids``, its strings in rail order
    (the first :data:`MAX_RAIL_TITLES`, each once); anything else in it is not a title."""
    properties = event.get("properties")
    titles = properties.get("title_ids") if isinstance(properties, Mapping) else None
    if not isinstance(titles, list):
        return []
    return list(dict.fromkeys(t for t in titles[:MAX_RAIL_TITLES] if isinstance(t, str) and t))


def _impression_step(state: ActorState, at_us: int, event: Mapping[str, Any]) -> None:
    """Count one more impression of each title of the rail in the current session."""
    impressions = state.impressions
    for title_id in rail_titles(event):
        seen = impressions.get(title_id)
        if seen is None:
            impressions[title_id] = [1, at_us, at_us]
        else:
            seen[0] += 1
            seen[1] = min(seen[1], at_us)
            seen[2] = max(seen[2], at_us)
    if len(impressions) > MAX_SESSION_IMPRESSIONS:
        # the titles shown least recently go first
        keep = sorted(impressions, key=lambda t: impressions[t][2])[-MAX_SESSION_IMPRESSIONS:]
        state.impressions = {t: impressions[t] for t in keep}


def _rating(event: Mapping[str, Any]) -> float | None:
    """A rating event's stars (the contract: an integer from 1 to 5)."""
    properties = event.get("properties")
    stars = properties.get("rating") if isinstance(properties, Mapping) else None
    if isinstance(stars, bool) or not isinstance(stars, int | float):
        return None
    return float(stars)


def _interact(
    state: ActorState, at_us: int, kind: str, title_id: str, value: float | None = None
) -> None:
    """Keep one interaction of the current session, in time order (the latest kept)."""
    bisect.insort(state.interactions, [at_us, kind, title_id, value], key=lambda i: i[:3])
    if len(state.interactions) > MAX_SESSION_INTERACTIONS:
        del state.interactions[0]


def _remember(titles: dict[str, int], title_id: str, at_us: int) -> None:
    if at_us > titles.get(title_id, -1):
        titles[title_id] = at_us
    if len(titles) > MAX_TITLES:
        oldest = min(titles, key=titles.__getitem__)
        del titles[oldest]


def _reaction_step(state: ActorState, at_us: int, event: Mapping, changes: list) -> None:
    """int_user_title_interests: the latest like or dislike wins (occurred_at, event_id)."""
    title_id = str(event["title_id"])
    kind = event["event_type"]
    reaction = [kind, at_us, str(event.get("event_id") or "")]
    previous = state.reactions.get(title_id)
    if previous is not None and reaction[1:] <= previous[1:]:
        return
    state.reactions[title_id] = reaction
    if previous is None or previous[0] != kind:
        changes.append(
            LiveChange(
                "liked" if kind == "like" else "disliked",
                state.actor_id,
                state.user_id,
                title_id,
                lr.time_of(at_us),
            )
        )


def _player_step(
    state: ActorState,
    at_us: int,
    code: int,
    event: Mapping,
    rules: LiveRules,
    changes: list,
    in_session: bool,
) -> None:
    playback_id = str(event["playback_id"])
    playback = state.playbacks.get(playback_id)
    if playback is None:
        playback = state.playbacks[playback_id] = PlaybackState(str(event["title_id"]))
        if in_session:
            _interact(state, at_us, "play", playback.title_id)
        if len(state.playbacks) > MAX_PLAYBACKS:
            _fold_oldest_playback(state, rules)
    playback.add(at_us, code, event)
    if playback.was_valid and playback.was_complete:
        return
    for flag, kind, holds in (
        ("was_valid", "valid_play", playback.is_valid),
        ("was_complete", "play_complete", playback.is_complete),
    ):
        if not getattr(playback, flag) and holds(rules):
            setattr(playback, flag, True)
            if kind == "play_complete" and in_session:
                _interact(state, at_us, "complete", playback.title_id)
            changes.append(
                LiveChange(
                    kind,
                    state.actor_id,
                    state.user_id,
                    playback.title_id,
                    lr.time_of(at_us),
                    playback_id=playback_id,
                )
            )


def _fold_oldest_playback(state: ActorState, rules: LiveRules) -> None:
    """Keep the title's counts and latest facts of the playback that ended first."""
    playback_id = min(state.playbacks, key=lambda pid: state.playbacks[pid].ended_us or 0)
    playback = state.playbacks.pop(playback_id)
    snapshot = _snapshot(playback_id, playback, rules)
    folded = state.folded.setdefault(playback.title_id, [0, 0, None, None])
    folded[0] += int(snapshot[7])
    folded[1] += int(snapshot[8])
    if folded[2] is None or snapshot[:2] > folded[2][:2]:
        folded[2] = snapshot
    if snapshot[7] and (folded[3] is None or snapshot[:2] > folded[3][:2]):
        folded[3] = snapshot


# ---------------------------------------------------------------------------
# Views


def actor_view(state: ActorState, rules: LiveRules) -> ActorView:
    """The view of one actor's state."""
    session = None
    if state.session is not None:
        started, last, count = state.session
        session = SessionView(
            lr.session_id(state.actor_id, started), lr.time_of(started), lr.time_of(last), count
        )
    progress = _progress(state, rules)
    liked = {t: r[1] for t, r in state.reactions.items() if r[0] == "like"}
    disliked = {t: r[1] for t, r in state.reactions.items() if r[0] == "dislike"}
    played = {t: p.last_watched_at for t, p in progress.items()}
    last_times = [state.session[1]] if state.session else []
    impressions, current_title = _session_titles(state)
    return ActorView(
        actor_id=state.actor_id,
        user_id=state.user_id,
        session=session,
        session_count=state.session_count,
        last_event_at=lr.time_of(max(last_times)) if last_times else None,
        browsed=_recent_first(state.browsed),
        clicked=_recent_first(state.clicked),
        played=_recent_first(played),
        liked=_recent_first(liked),
        disliked=_recent_first(disliked),
        progress=progress,
        session_interactions=tuple(
            SessionInteraction(kind, title_id, lr.time_of(at_us), *value)
            for at_us, kind, title_id, *value in state.interactions
        ),
        impressions=impressions,
        current_title=current_title,
    )


def _session_titles(state: ActorState) -> tuple[dict[str, TitleImpressions], str | None]:
    """The current session's impressions per title, and the title of its latest playback."""
    started: dict[str, int] = {}
    latest: tuple[int, str] | None = None
    session_start = state.session[0] if state.session else None
    for playback in state.playbacks.values():
        title_id = playback.title_id
        if playback.started_us is not None:
            started[title_id] = max(started.get(title_id, playback.started_us), playback.started_us)
        ended = playback.ended_us
        if session_start is not None and ended is not None and ended >= session_start:
            if latest is None or (ended, title_id) > latest:
                latest = (ended, title_id)
    impressions = {
        title_id: TitleImpressions(
            title_id,
            count,
            lr.time_of(first_us),
            lr.time_of(last_us),
            clicked=max(state.clicked.get(title_id, -1), started.get(title_id, -1)) >= first_us,
        )
        for title_id, (count, first_us, last_us) in state.impressions.items()
    }
    return impressions, latest[1] if latest else None


def _recent_first(titles: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(titles, key=lambda t: (titles[t], t), reverse=True))


def _progress(state: ActorState, rules: LiveRules) -> dict[str, TitleProgress]:
    per_title: dict[str, list] = {
        title: [folded[0], folded[1], folded[2], folded[3]]
        for title, folded in state.folded.items()
    }
    for playback_id, playback in state.playbacks.items():
        snapshot = _snapshot(playback_id, playback, rules)
        facts = per_title.setdefault(playback.title_id, [0, 0, None, None])
        facts[0] += int(snapshot[7])
        facts[1] += int(snapshot[8])
        if facts[2] is None or snapshot[:2] > facts[2][:2]:
            facts[2] = snapshot
        if snapshot[7] and (facts[3] is None or snapshot[:2] > facts[3][:2]):
            facts[3] = snapshot
    return {
        title: _title_progress(title, facts, rules)
        for title, facts in per_title.items()
        if facts[2] is not None
    }


def _title_progress(title_id: str, facts: list, rules: LiveRules) -> TitleProgress:
    valid_count, complete_count, latest, latest_valid = facts
    resume = None
    if (
        latest_valid is not None
        and not latest_valid[8]
        and latest_valid[2] >= rules.continue_watching_min_position_s
    ):
        resume = latest_valid
    return TitleProgress(
        title_id=title_id,
        playback_id=latest[1],
        position_s=latest[2],
        duration_s=latest[3],
        pct=latest[4],
        played_s=latest[6],
        is_valid_play=bool(latest[7]),
        is_complete=bool(latest[8]),
        started_at=lr.time_of(latest[0]),
        last_watched_at=lr.time_of(latest[5]),
        valid_play_count=valid_count,
        complete_count=complete_count,
        resume_position_s=resume[2] if resume else None,
        resume_watched_at=lr.time_of(resume[5]) if resume else None,
    )


# ---------------------------------------------------------------------------
# Backends


class LiveState(abc.ABC):
    """The live state's interface: ``apply``, ``view``, ``backend``, ``close``."""

    rules: LiveRules

    @property
    @abc.abstractmethod
    def backend(self) -> str:
        """``memory`` or ``redis``: where the state is kept now."""

    @abc.abstractmethod
    def apply(self, events: Sequence[Mapping[str, Any]]) -> list[LiveChange]:
        """Apply accepted events in arrival order; what became true for the first time."""

    @abc.abstractmethod
    def view(self, actor_id: str) -> ActorView | None:
        """The actor's state now, or None if nothing is known of it."""

    def restore(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Apply events taken in before (a rebuild): no change is reported for them."""
        self.apply(events)

    def close(self) -> None:  # noqa: B027 (optional: the embedded state holds nothing to release)
        """Release connections and threads; the state is not used after."""


class MemoryState(LiveState):
    """The embedded state: actors in a dict, in this process only.

    Actors untouched for ``ttl_s`` (wall clock) are forgotten, least recent first.
    """

    def __init__(self, rules: LiveRules | None = None, ttl_s: float = STATE_TTL_S) -> None:
        self.rules = rules or lr.load_rules()
        self.ttl_s = ttl_s
        self._actors: OrderedDict[str, ActorState] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return "memory"

    def __len__(self) -> int:
        return len(self._actors)

    def apply(self, events: Sequence[Mapping[str, Any]]) -> list[LiveChange]:
        changes: list[LiveChange] = []
        by_actor = prepare(events)
        now = time.monotonic()
        with self._lock:
            for actor_id, prepared in by_actor.items():
                state = apply_to_actor(
                    self._actors.get(actor_id), actor_id, prepared, self.rules, changes
                )
                if state is None:
                    self._actors.pop(actor_id, None)
                    self._touched.pop(actor_id, None)
                else:
                    self._actors[actor_id] = state
                    self._actors.move_to_end(actor_id)
                    self._touched[actor_id] = now
            self._expire(now)
        return changes

    def _expire(self, now: float) -> None:
        while self._actors:
            actor_id = next(iter(self._actors))
            if now - self._touched[actor_id] <= self.ttl_s:
                break
            del self._actors[actor_id]
            del self._touched[actor_id]

    def view(self, actor_id: str) -> ActorView | None:
        with self._lock:
            state = self._actors.get(actor_id)
            return actor_view(state, self.rules) if state is not None else None

    def states(self) -> list[ActorState]:
        """Every actor's state (tests and measurements)."""
        with self._lock:
            return list(self._actors.values())


def open_state(rt, rules: LiveRules | None = None) -> LiveState:
    """The live state for these real-time settings: Redis when ``rt.redis_url``, else memory.

    With Redis unreachable, the state starts on memory with a warning and moves to
    Redis when it answers (``ottp.realtime.redis_state.ResilientState``).
    """
    rules = rules or lr.load_rules()
    if getattr(rt, "redis_url", None):
        from ottp.realtime.redis_state import ResilientState

        return ResilientState(rt.redis_url, rules)
    return MemoryState(rules)


# ---------------------------------------------------------------------------
# Rebuild


@dataclass(frozen=True)
class RebuildReport:
    files: int
    events: int
    seconds: float


_REBUILD_COLUMNS = (
    "event_id",
    "event_type",
    "occurred_at",
    "user_id",
    "device_id",
    "playback_id",
    "title_id",
    "position_s",
    "duration_s",
    "from_position_s",
    "properties",
)


def rebuild_from_landing(
    state: LiveState, landing_dir: Path, hours: float, now: datetime | None = None
) -> RebuildReport:
    """Apply the events received in the last ``hours`` before ``now``, in occurred_at order.

    The event files of those receipt days (``landing/events/date=…``) are read with
    the loader's validation (``ottp.ingest.validate``): the lines it would load,
    the first received copy of each event_id, received within the window.
    """
    import duckdb

    from ottp.ingest import landing, validate

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    since = now - timedelta(hours=hours)
    paths = [
        str(f.path)
        for f in landing.discover(Path(landing_dir))
        if f.kind == "events" and since.date() <= f.partition_date <= now.date()
    ]
    if not paths:
        return RebuildReport(0, 0, time.perf_counter() - started)
    applied = 0
    con = duckdb.connect()
    try:
        validate.validate_events(con, paths)
        cursor = con.execute(
            f"""
            select {", ".join(_REBUILD_COLUMNS[:-1])},
                -- only a rail's titles and a rating's stars are read from the properties
                case when event_type in ('rail_impression', 'rating') then properties end
                    as properties
            from _validated
            where reason_code is null and received_at >= $since and received_at <= $now
            qualify row_number() over (
                partition by event_id order by received_at, file_path
            ) = 1
            order by occurred_at, event_id
            """,
            {"since": since.replace(tzinfo=None), "now": now.replace(tzinfo=None)},
        )
        while rows := cursor.fetchmany(REBUILD_CHUNK):
            events = [dict(zip(_REBUILD_COLUMNS, row, strict=True)) for row in rows]
            for event in events:
                event["event_id"] = str(event["event_id"])
                if event["properties"] is not None:  # JSON text
                    event["properties"] = orjson.loads(event["properties"])
            state.restore(events)
            applied += len(events)
    finally:
        con.close()
    report = RebuildReport(len(paths), applied, time.perf_counter() - started)
    logger.info(
        "live state rebuilt from %d landing files: %d events in %.1f s",
        report.files,
        report.events,
        report.seconds,
    )
    return report
