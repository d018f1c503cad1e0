"""Scenario triggers fired from the live path, within seconds, into the batch's ledger.

After intake's ``live.apply``, :class:`TriggerEngine` looks at the ``valid_play``
changes of known users (not anonymous devices) and fires ``became_<segment>``
when the user's distinct validly played titles of the title's category (the
bundle's batch titles united with the live ones, counted by
``profile.merge_segments``) reach that segment's ``min_titles_watched`` at this
play: the rule of ``crm_trigger_log.segment_triggers``, with the same
``trigger_id`` (md5 of ``user_id|scenario|subject_id``), subject, ``occurred_at``
(the title's first valid play's start), window (``crm_trigger_window_days``)
and eligibility (a user not in ``users``, deleted or a deleted user's pseudonym
gets none; a user who is not a contact gets a suppressed one).

Exactly once, one ledger: a trigger_id already in the bundle's ledger
(``exports.crm_trigger_log``) or fired live before is skipped. Live, the claim
is a set in this process, and with ``OTTP_REDIS_URL`` a Redis ``SADD`` (one
process wins). A claimed trigger is written durably to its own landing files,
``<landing>/triggers/date=<day>/….ndjson.gz`` (the same writer as events, fsynced),
before it is delivered; ``ottp.ingest.live_triggers`` loads them into
``raw.live_triggers`` and the next build appends them to the ledger, which then
never detects them again. The embedded set is rebuilt from those files at start.

``cancelled``, ``abandoned_title``, ``new_episode`` and ``at_risk`` stay batch-only
(docs/realtime.md, "Scenarios in real time").
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ottp.realtime.bundle import Bundle
from ottp.realtime.landing_writer import OPEN_SUFFIX, LandingWriter
from ottp.realtime.profile import merge_segments

logger = logging.getLogger(__name__)

KIND = "triggers"
REDIS_KEY = "ottp:live:triggers"
SCENARIO_PREFIX = "became_"
DEFAULT_WINDOW_DAYS = 7
WRITE_TIMEOUT_S = 30.0
# crm_trigger_log's columns, in order, plus is_suppressed
COLUMNS = (
    "trigger_id",
    "user_id",
    "scenario",
    "subject_type",
    "subject_id",
    "subject_name",
    "category",
    "cancel_reason",
    "cancel_reason_description",
    "is_cancel_reason_addressable",
    "is_suppressed",
    "occurred_at",
    "fired_at",
)


def trigger_id(user_id: str, scenario: str, subject_id: str) -> str:
    """The batch's id: ``dbt.hash(user_id || '|' || scenario || '|' || subject_id)``, md5 hex."""
    return hashlib.md5(f"{user_id}|{scenario}|{subject_id}".encode()).hexdigest()  # noqa: S324


def _naive_utc(moment: datetime) -> datetime:
    # the warehouse's timestamps are naive UTC
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _stamp(moment: datetime) -> str:
    return _naive_utc(moment).isoformat(sep=" ", timespec="microseconds")


def _new_titles(plays: Sequence[Any], progress: Mapping[str, Any]) -> dict[str, datetime]:
    """Titles whose every valid playback became valid in this apply -> their first start.

    A title validly played before this apply (live) was counted then, not now.
    """
    per_title: dict[str, list[Any]] = {}
    for change in plays:
        per_title.setdefault(change.title_id, []).append(change)
    out = {}
    for title_id, changes in per_title.items():
        p = progress.get(title_id)
        if p is None or p.valid_play_count != len(changes):
            continue
        # int_plays' started_at of the playback (the batch's min(started_at)); a
        # playback the view does not show as latest falls back to its change's time
        starts = [
            p.started_at if c.playback_id == p.playback_id else c.occurred_at for c in changes
        ]
        out[title_id] = min(starts)
    return out


def segment_triggers(
    bundle: Bundle,
    user_id: str,
    plays: Sequence[Any],
    progress: Mapping[str, Any],
    fired_at: datetime,
) -> list[dict[str, Any]]:
    """The ``became_<segment>`` triggers one user's valid plays of this apply reach.

    ``plays``: the user's ``valid_play`` LiveChanges; ``progress``: the live view's
    per-title progress after the apply. Eligibility is left to the caller.
    """
    new = _new_titles(plays, progress)
    if not new:
        return []
    live_valid = [t for t, p in progress.items() if p.valid_play_count]
    before = merge_segments(bundle, user_id, [t for t in live_valid if t not in new])
    counts = {s["category"]: s["titles_watched"] for s in before}
    batch = bundle.watched_titles(user_id)
    window = timedelta(days=int(bundle.rules.get("crm_trigger_window_days", DEFAULT_WINDOW_DAYS)))
    out = []
    # numbered as the batch numbers them: first_played_at, then title_id
    for started_at, title_id in sorted((at, t) for t, at in new.items()):
        category = bundle.category_of(title_id)
        if category is None or title_id in batch.get(category, ()):
            continue
        counts[category] = counts.get(category, 0) + 1
        if not fired_at - window < started_at <= fired_at:
            continue  # crm_trigger_log's window: a stale condition never fires
        for segment, n in bundle.thresholds.items():
            if counts[category] != n:
                continue
            scenario = SCENARIO_PREFIX + segment
            out.append(
                {
                    "trigger_id": trigger_id(user_id, scenario, category),
                    "user_id": user_id,
                    "scenario": scenario,
                    "subject_type": "category",
                    "subject_id": category,
                    "subject_name": bundle.categories.get(category),
                    "category": category,
                    "cancel_reason": None,
                    "cancel_reason_description": None,
                    "is_cancel_reason_addressable": None,
                    "is_suppressed": False,
                    "occurred_at": _stamp(started_at),
                    "fired_at": _stamp(fired_at),
                }
            )
    return out


def detect(
    changes: Iterable[Any],
    bundle: Bundle,
    view: Callable[[str], Any],
    fired_at: datetime,
    deleted: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Every trigger the changes of one apply reach, with the batch's eligibility."""
    per_user: dict[str, list[Any]] = {}
    for change in changes:
        if (
            change.kind == "valid_play"
            and change.user_id
            and change.title_id
            and not str(change.actor_id).startswith("device:")
        ):
            per_user.setdefault(change.user_id, []).append(change)
    out: list[dict[str, Any]] = []
    for user_id, plays in per_user.items():
        audience = bundle.audience_of(user_id)
        # not in users yet (the next build decides), deleted, or a pseudonym: none
        if audience is None or not audience["is_eligible"] or user_id in deleted:
            continue
        actor = view(user_id)
        if actor is None:
            continue
        for trigger in segment_triggers(bundle, user_id, plays, actor.progress, fired_at):
            trigger["is_suppressed"] = not audience["is_contact"]
            out.append(trigger)
    return out


def read_fired_ids(landing_dir: Path) -> set[str]:
    """The trigger ids in the trigger landing files (closed ones and ones still open)."""
    ids: set[str] = set()
    root = Path(landing_dir) / KIND
    if not root.is_dir():
        return ids
    for path in sorted(root.glob("date=*/*")):
        if not path.name.endswith((".ndjson.gz", OPEN_SUFFIX)):
            continue
        try:
            with gzip.open(path, "rb") as f:
                for line in f:
                    try:
                        ids.add(str(orjson.loads(line)["trigger_id"]))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
        except (EOFError, OSError, zlib.error):
            # a member cut by a crash (its lines were never acknowledged): what came before counts
            continue
    return ids


class TriggerEngine:
    """Fires live triggers once, records them in the trigger landing files, hands them on."""

    def __init__(
        self,
        landing_dir: Path,
        bundle: Callable[[], Bundle | None],
        *,
        redis_url: str | None = None,
        redis_key: str = REDIS_KEY,
        delivery: Any | None = None,
        roll_bytes: int = 64 << 20,
        roll_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.landing_dir = Path(landing_dir)
        self._bundle = bundle
        # ottp.realtime.webhook.Delivery (submit, stop), or None: recorded only
        self.delivery = delivery
        self._clock = clock
        self.writer = LandingWriter(self.landing_dir, roll_bytes, roll_seconds, kind=KIND)
        self._fired: set[str] = set()
        self._deleted: set[str] = set()
        self._lock = threading.Lock()
        self._redis = None
        self.redis_key = redis_key
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0)
        self.fired_count = 0

    def start(self) -> TriggerEngine:
        """Recover open trigger files, rebuild the fired set from them, start the writer."""
        self.writer.start()
        self._fired = read_fired_ids(self.landing_dir)
        if self._redis is not None and self._fired:
            try:
                self._redis.sadd(self.redis_key, *self._fired)
            except Exception as exc:  # redis errors of any kind: the claim still guards
                logger.warning("live triggers not copied to Redis (%s)", type(exc).__name__)
        return self

    def close(self) -> None:
        self.writer.close()
        if self.delivery is not None:
            self.delivery.stop()
        if self._redis is not None:
            self._redis.close()

    def is_fired(self, tid: str) -> bool:
        return tid in self._fired

    def on_changes(
        self,
        changes: Sequence[Any],
        view: Callable[[str], Any],
        events: Iterable[Mapping[str, Any]] = (),
    ) -> list[dict]:
        """React to one apply's changes (and its events: a deletion request); the triggers
        fired, recorded durably, in order."""
        for event in events:
            # a user who asked for deletion gets no trigger, as the next build decides
            if event.get("event_type") == "deletion_request" and event.get("user_id"):
                self._deleted.add(str(event["user_id"]))
        for change in changes:
            if change.kind == "state_deleted" and not change.actor_id.startswith("device:"):
                self._deleted.add(change.actor_id)
        bundle = self._bundle()
        if bundle is None or not any(c.kind == "valid_play" for c in changes):
            return []
        found = detect(changes, bundle, view, self._clock(), self._deleted)
        claimed = self._claim([t for t in found if t["trigger_id"] not in bundle.trigger_ids])
        if not claimed:
            return []
        lines = [orjson.dumps({k: t[k] for k in COLUMNS}) for t in claimed]
        try:
            self.writer.submit(lines, self._clock()).result(WRITE_TIMEOUT_S)
        except Exception as exc:  # not recorded: release the claim, the batch detects them
            logger.error(
                "live triggers not recorded (%s): %d released", type(exc).__name__, len(lines)
            )
            self._release([t["trigger_id"] for t in claimed])
            return []
        self.fired_count += len(claimed)
        if self.delivery is not None:
            self.delivery.submit([t for t in claimed if not t["is_suppressed"]])
        return claimed

    def _claim(self, triggers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The triggers this process may fire: not fired here, and won in Redis when shared."""
        won = []
        with self._lock:
            for t in triggers:
                tid = t["trigger_id"]
                if tid in self._fired:
                    continue
                if self._redis is not None:
                    try:
                        if not self._redis.sadd(self.redis_key, tid):
                            self._fired.add(tid)  # another process fired it
                            continue
                    except Exception as exc:  # no atomic claim: leave it to the batch
                        logger.warning("live trigger not claimed (%s)", type(exc).__name__)
                        continue
                self._fired.add(tid)
                won.append(t)
        return won

    def _release(self, ids: list[str]) -> None:
        with self._lock:
            self._fired.difference_update(ids)
        if self._redis is not None:
            try:
                self._redis.srem(self.redis_key, *ids)
            except Exception as exc:
                logger.warning("live trigger claims not released (%s)", type(exc).__name__)
