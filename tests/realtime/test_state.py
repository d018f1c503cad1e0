"""The live state: the batch models' sessions and plays, on both backends, shared,
concurrent, through a Redis outage, and rebuilt from the landing files.

The strongest check: a simulated dataset (plus hand-made playbacks of every kind the
play rules tell apart) is loaded and int_sessions and int_plays are built with dbt;
the same events fed to the live state give the same sessions, valid plays and
completions. Redis is the real server (db REDIS_DB, flushed by the fixture); its
outage is a proxy this test stops and starts, never the shared server.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import socket
import subprocess
import threading
import time
import tracemalloc
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
import redis

from ottp import config
from ottp.ingest import landing, load
from ottp.realtime import live_rules
from ottp.realtime.redis_state import RedisState, ResilientState, actor_key
from ottp.realtime.state import (
    SEEN_IDS,
    LiveState,
    MemoryState,
    event_digest,
    open_state,
    rebuild_from_landing,
)
from tests.conftest import dbt_folder_env, make_event, write_landing

REDIS_DB = 11
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
EDGE_DAY = date(2026, 8, 2)
BATCH = 100


def _wait_for(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.02)


def _at(seconds_after: float, hour: int = 0) -> str:
    moment = datetime(2026, 8, 2, 6, tzinfo=UTC) + timedelta(hours=hour, seconds=seconds_after)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _player(kind, playback, hour, after_s, position, *, duration=1000, title="t_00001", **more):
    return make_event(
        event_type=kind,
        user_id="u_edge_1",
        device_id="d_edge_1",
        playback_id=playback,
        title_id=title,
        position_s=position,
        duration_s=duration,
        properties=None,
        occurred_at=_at(after_s, hour),
        received_at=_at(after_s + 1, hour),
        **more,
    )


def _edge_playbacks() -> list[dict]:
    """Playbacks the play rules tell apart, one an hour (each its own session)."""
    shapes = {
        # play_start lost: playing from the first heartbeat
        "lost-start": [("heartbeat", 0, 100), ("heartbeat", 60, 160), ("heartbeat", 120, 220),
                       ("stop", 130, 230)],
        # resume lost: a later heartbeat further on was playing
        "lost-resume": [("play_start", 0, 0), ("heartbeat", 60, 60), ("pause", 70, 70),
                        ("heartbeat", 200, 130), ("stop", 230, 160)],
        # a seek while paused is no play
        "seek-paused": [("play_start", 0, 0), ("pause", 40, 40), ("seek", 50, 500, 40),
                        ("resume", 60, 500), ("heartbeat", 120, 560), ("stop", 125, 565)],
        "seek-back": [("play_start", 0, 0), ("heartbeat", 60, 60), ("heartbeat", 120, 120),
                      ("seek", 125, 30, 125), ("heartbeat", 185, 90), ("stop", 190, 95)],
        "same-instant": [("heartbeat", 0, 0), ("play_start", 0, 0), ("heartbeat", 60, 60),
                         ("stop", 61, 61), ("complete", 61, 61)],
        # the same pause resent under another id
        "resent-pause": [("play_start", 0, 0), ("heartbeat", 60, 60), ("pause", 65, 65),
                         ("pause", 65, 65), ("resume", 100, 65), ("heartbeat", 160, 125),
                         ("stop", 170, 135)],
        "seek-forward": [("play_start", 0, 0), ("heartbeat", 60, 60), ("seek", 70, 800, 70),
                         ("heartbeat", 130, 860), ("complete", 140, 870)],
        "exactly-valid": [("play_start", 0, 0), ("stop", 30, 30)],
        "just-short": [("play_start", 0, 0), ("stop", 29.999, 29.999)],
        "one-heartbeat": [("heartbeat", 0, 50)],
    }  # fmt: skip
    events = []
    for hour, (name, steps) in enumerate(shapes.items()):
        for kind, after_s, position, *source in steps:
            more = {"from_position_s": source[0]} if source else {}
            events.append(_player(kind, f"pb-{name}", hour, after_s, position, **more))
    # 90% of a 100 s title reached without a complete event
    for kind, after_s, position in [("play_start", 0, 0), ("heartbeat", 60, 60), ("stop", 95, 95)]:
        events.append(_player(kind, "pb-ninety", 11, after_s, position, duration=100))
    return events


def _edge_sessions() -> list[dict]:
    """Gaps of exactly 30 minutes (one session) and 30 minutes and 1 ms (two)."""
    events = []
    for user, device, offsets in [
        ("u_edge_2", "d_edge_2", [0, 1800, 3600.001]),
        (None, "d_edge_anon", [0, 1860, 1900]),
    ]:
        for offset in offsets:
            events.append(
                make_event(
                    user_id=user,
                    device_id=device,
                    title_id="t_00002",
                    properties={"page": "title"},
                    occurred_at=_at(offset, 14),
                    received_at=_at(offset + 1, 14),
                )
            )
    for kind, offset, title in [("like", 0, "t_00003"), ("dislike", 300, "t_00003"),
                                ("like", 301, "t_00004")]:  # fmt: skip
        events.append(
            make_event(event_type=kind, user_id="u_edge_2", title_id=title, properties=None,
                       occurred_at=_at(offset, 16), received_at=_at(offset + 1, 16))
        )  # fmt: skip
    return events


def _dbt(root, *args: str) -> None:
    out = subprocess.run(
        [
            config.dbt_executable(),
            *args,
            "--profiles-dir",
            str(config.DBT_PROJECT_DIR),
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--target-path",
            str(root / "dbt_target"),
            "--log-path",
            str(root / "dbt_logs"),
        ],
        # in the warehouse's folder (the relative path of the session's saved parse)
        cwd=root,
        env={**config.dbt_env(), **dbt_folder_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:]


def _landing_events(landing_dir) -> list[dict]:
    events = []
    for found in landing.discover(landing_dir):
        if found.kind == "events":
            with gzip.open(found.path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    try:
                        events.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
    return events


@pytest.fixture(scope="module")
def batch(tmp_path_factory, dbt_saved_parse):
    """A simulated dataset with the hand-made events, loaded; int_sessions and int_plays built."""
    root = tmp_path_factory.mktemp("live_state")
    mp = pytest.MonkeyPatch()
    mp.setenv("OTTP_DATA_DIR", str(root))
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    from ottp.simulator import simulate

    simulate(root / "landing", users=30, titles=30, days=2, seed=7, dirty_rate=0.0)
    edge = _edge_playbacks() + _edge_sessions()
    # a resent line and a malformed one: the loader keeps one copy and rejects the other
    write_landing(
        root / "landing", [*edge, edge[0], "{not json"], EDGE_DAY, name="part-edge.ndjson.gz"
    )
    load.load_landing(root / "warehouse.duckdb", root / "landing")
    dbt_saved_parse(root / "dbt_target")
    _dbt(root, "run", "--select", "+int_plays", "+int_sessions")
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    loaded = {r[0] for r in con.execute("select event_id::varchar from raw.events").fetchall()}
    plays = con.execute(
        "select playback_id, user_id, title_id, played_s, is_valid_play, is_complete, "
        "last_position_s, started_at, ended_at from intermediate.int_plays"
    ).fetchall()
    sessions = con.execute(
        "select actor_id, session_id, started_at, ended_at, event_count "
        "from intermediate.int_sessions order by actor_id, started_at"
    ).fetchall()
    con.close()
    mp.undo()
    seen, events = set(), []
    for event in _landing_events(root / "landing"):
        if event.get("event_id") in loaded and event["event_id"] not in seen:
            seen.add(event["event_id"])
            events.append(event)
    events.sort(key=lambda e: live_rules.parse_time_us(e["occurred_at"]))
    return {"root": root, "events": events, "plays": plays, "sessions": sessions}


def _feed(state: LiveState, events: list[dict]) -> list:
    changes = []
    for start in range(0, len(events), BATCH):
        changes.extend(state.apply(events[start : start + BATCH]))
    return changes


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def fed(batch):
    """The memory state fed every loaded event in occurred_at order, batches of 100."""
    state = MemoryState()
    changes = _feed(state, batch["events"])
    return state, changes


def test_the_rules_come_from_the_dbt_project_vars():
    rules = live_rules.load_rules()
    assert rules.session_gap_s == 30 * 60 and rules.valid_play_min_s == 30
    assert rules.complete_min_pct == 0.9 and rules.continue_watching_min_position_s == 60
    bundle_rules = live_rules.rules_from({**rules.__dict__, "valid_play_min_s": 45})
    assert bundle_rules.valid_play_min_s == 45
    with pytest.raises(ValueError, match="complete_min_pct"):
        live_rules.rules_from({"session_gap_minutes": 30})


def test_live_sessions_are_int_sessions(batch, fed):
    state, _ = fed
    by_actor: dict[str, list] = {}
    for row in batch["sessions"]:
        by_actor.setdefault(row[0], []).append(row)
    assert {s.actor_id for s in state.states()} == set(by_actor)
    # exactly 30 minutes keeps the session, a millisecond more splits it
    assert [row[4] for row in by_actor["u_edge_2"]] == [2, 1, 3]
    assert len(by_actor["device:d_edge_anon"]) == 2
    for actor_id, rows in by_actor.items():
        view = state.view(actor_id)
        assert view.session_count == len(rows), actor_id
        _, session_id, started_at, ended_at, event_count = rows[-1]
        assert view.session.session_id == session_id, actor_id
        assert _naive(view.session.started_at) == started_at
        assert _naive(view.session.last_event_at) == ended_at
        assert view.session.event_count == event_count


def _batch_title_counts(plays) -> dict:
    counts: dict = {}
    for _, user, title, _, valid, complete, *_ in plays:
        valid_count, complete_count = counts.get((user, title), (0, 0))
        counts[(user, title)] = (valid_count + int(valid), complete_count + int(complete))
    return counts


def _batch_continue_watching(plays, rules) -> dict:
    """continue_watching's rule over int_plays: the latest valid play, not complete, past 60 s."""
    latest: dict = {}
    for pid, user, title, _, valid, complete, position, started, ended in plays:
        if valid and (started, pid) > latest.get((user, title), (datetime.min, ""))[:2]:
            latest[(user, title)] = (started, pid, complete, position, ended)
    return {
        key: (position, ended)
        for key, (_, _, complete, position, ended) in latest.items()
        if not complete and position >= rules.continue_watching_min_position_s
    }


def test_live_plays_are_int_plays(batch, fed):
    state, changes = fed
    rules = state.rules
    plays = {row[0]: row for row in batch["plays"]}
    live = {pid: p for s in state.states() for pid, p in s.playbacks.items()}
    assert set(live) == set(plays)
    for pid, playback in live.items():
        _, _, title, played_s, valid, complete, last_position, *_ = plays[pid]
        assert playback.played_s == pytest.approx(played_s, abs=1e-6), pid
        assert (playback.is_valid(rules), playback.is_complete(rules)) == (valid, complete), pid
        assert playback.last_position_s == last_position and playback.title_id == title
    # the hand-made playbacks cover both outcomes of each rule
    assert plays["pb-exactly-valid"][4] and not plays["pb-just-short"][4]
    assert plays["pb-ninety"][5] and plays["pb-seek-forward"][5] and not plays["pb-lost-resume"][5]

    counts = _batch_title_counts(batch["plays"])
    resume = _batch_continue_watching(batch["plays"], rules)
    assert any(valid for valid, _ in counts.values()) and resume
    for (user, title), (valid_count, complete_count) in counts.items():
        progress = state.view(user).progress[title]
        assert (progress.valid_play_count, progress.complete_count) == (valid_count, complete_count)
        if (user, title) in resume:
            position, ended = resume[(user, title)]
            assert progress.resume_position_s == position
            assert _naive(progress.resume_watched_at) == ended
        else:
            assert progress.resume_position_s is None
    # each valid play and completion is reported once, when it becomes true
    kinds = Counter(c.kind for c in changes)
    assert kinds["valid_play"] == sum(v for v, _ in counts.values())
    assert kinds["play_complete"] == sum(c for _, c in counts.values())
    assert kinds["session_start"] == len(batch["sessions"])


def test_titles_and_reactions(fed):
    state, changes = fed
    view = state.view("u_edge_2")
    assert view.browsed == ("t_00002",)
    assert view.liked == ("t_00004",) and view.disliked == ("t_00003",)
    liked = [c for c in changes if c.actor_id == "u_edge_2" and c.kind in ("liked", "disliked")]
    assert [(c.kind, c.title_id) for c in liked] == [
        ("liked", "t_00003"), ("disliked", "t_00003"), ("liked", "t_00004"),
    ]  # fmt: skip
    assert state.view("u_edge_1").played[0] == "t_00001"
    clicked = [s for s in state.states() if s.clicked]
    assert clicked and all(set(s.clicked) <= set(state.view(s.actor_id).clicked) for s in clicked)


def test_plays_do_not_depend_on_arrival_order(batch, fed):
    ordered, _ = fed
    events = list(batch["events"])
    random.Random(3).shuffle(events)
    shuffled = MemoryState()
    _feed(shuffled, events)
    for state in ordered.states():
        expected, got = ordered.view(state.actor_id), shuffled.view(state.actor_id)
        assert got.progress == expected.progress, state.actor_id
        assert (got.liked, got.disliked) == (expected.liked, expected.disliked)
        assert set(got.browsed) == set(expected.browsed)


def test_both_backends_give_the_same_views_and_changes(batch, fed, redis_db):
    memory, memory_changes = fed
    shared = RedisState(REDIS_URL)
    try:
        assert _feed(shared, batch["events"]) == memory_changes
        for state in memory.states():
            assert shared.view(state.actor_id) == memory.view(state.actor_id), state.actor_id
        assert shared.view("u_nobody") is None
        assert redis_db.ttl(actor_key("u_edge_1")) > 24 * 3600
    finally:
        shared.close()


def test_two_processes_on_one_redis_see_each_others_updates(batch, redis_db):
    events = [e for e in batch["events"] if e.get("user_id") == "u_edge_1"]
    first, second = open_state(_Rt(REDIS_URL)), open_state(_Rt(REDIS_URL))
    try:
        assert first.backend == second.backend == "redis"
        half = len(events) // 2
        first.apply(events[:half])
        assert second.view("u_edge_1").progress.keys() == first.view("u_edge_1").progress.keys()
        second.apply(events[half:])
        expected = MemoryState()
        expected.apply(events)
        assert first.view("u_edge_1") == expected.view("u_edge_1")
    finally:
        first.close()
        second.close()


class _Rt:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url


def test_concurrent_applies_for_one_actor_lose_nothing(redis_db):
    per_writer = 80
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        state = RedisState(REDIS_URL)
        try:
            start.wait()
            for i in range(per_writer):
                state.apply(
                    [
                        make_event(
                            user_id="u_busy",
                            title_id=f"t_{writer}_{i}",
                            properties={"page": "title"},
                            occurred_at=_at(i * 2 + writer, 20),
                        )
                    ]
                )
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            state.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    reader = RedisState(REDIS_URL)
    try:
        view = reader.view("u_busy")
    finally:
        reader.close()
    assert len(view.browsed) == 2 * per_writer
    assert view.session.event_count == 2 * per_writer and view.session_count == 1


def _state_for(backend: str) -> LiveState:
    return MemoryState() if backend == "memory" else RedisState(REDIS_URL)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_resent_batch_is_applied_once(batch, fed, redis_db, backend):
    """A client's retry (the same event_ids again) changes no view and reports nothing."""
    expected, expected_changes = fed
    events = batch["events"]
    state = _state_for(backend)
    try:
        changes = []
        for start in range(0, len(events), BATCH):
            part = events[start : start + BATCH]
            changes.extend(state.apply(part))
            assert state.apply(part) == [], start  # the retry, right after
        assert changes == expected_changes
        # every actor's sessions still count each event once, as int_sessions does
        for actor in expected.states():
            assert state.view(actor.actor_id) == expected.view(actor.actor_id), actor.actor_id
        # a later resend of the recent events, shuffled, with the ids spelled in upper case
        recent_ids = {
            e["event_id"] for a in expected.states() for e in _recent_events(events, a.actor_id)
        }
        resent = [
            {**e, "event_id": e["event_id"].upper()} for e in events if e["event_id"] in recent_ids
        ]
        random.Random(5).shuffle(resent)
        assert resent and _feed(state, resent) == []
        for actor in expected.states():
            assert state.view(actor.actor_id) == expected.view(actor.actor_id), actor.actor_id
    finally:
        state.close()


def _recent_events(events: list[dict], actor_id: str) -> list[dict]:
    """The actor's last SEEN_IDS events in the order they were applied."""
    return [e for e in events if live_rules.actor_id_of(e) == actor_id][-SEEN_IDS:]


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_resent_ids_kept_are_the_actors_last_ones(redis_db, backend):
    events = [
        make_event(user_id="u_many", title_id=f"t_{i:05d}", occurred_at=_at(i, 3))
        for i in range(SEEN_IDS + 1)
    ]
    state = _state_for(backend)
    try:
        state.apply(events)
        assert state.view("u_many").session.event_count == SEEN_IDS + 1
        state.apply(events[1:])  # all kept: ignored
        assert state.view("u_many").session.event_count == SEEN_IDS + 1
        # the oldest id is no longer kept: applied again, counted again (titles unchanged)
        before = state.view("u_many")
        state.apply(events[:1])
        view = state.view("u_many")
        assert view.session.event_count == SEEN_IDS + 2 and view.browsed == before.browsed
    finally:
        state.close()


def test_an_event_id_is_one_uuid_whatever_its_spelling():
    event_id = "7F0C2A52-93D4-4C6E-9D0B-2B7C1E4A9F10"
    digests = {
        event_digest({"event_id": spelling})
        for spelling in (
            event_id,
            event_id.lower(),
            "{" + event_id + "}",
            event_id.replace("-", ""),
        )
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 8
    assert event_digest({"event_id": "not-a-uuid"}) != event_digest({"event_id": "Not-a-uuid"})
    assert event_digest({}) is None


def test_deletion_request_drops_the_actors_state():
    state = MemoryState()
    state.apply([make_event(user_id="u_gone", occurred_at=_at(0, 1))])
    changes = state.apply(
        [make_event(event_type="deletion_request", user_id="u_gone", properties={},
                    occurred_at=_at(5, 1))]
    )  # fmt: skip
    assert [c.kind for c in changes] == ["state_deleted"] and state.view("u_gone") is None


def test_a_late_event_joins_the_session_within_the_gap_only():
    state = MemoryState()
    state.apply([make_event(user_id="u_late", occurred_at=_at(3600, 1))])
    first = state.view("u_late").session
    state.apply([make_event(user_id="u_late", occurred_at=_at(3600 - 600, 1))])
    moved = state.view("u_late").session
    assert moved.started_at == first.started_at - timedelta(seconds=600)
    assert moved.session_id != first.session_id and moved.event_count == 2
    state.apply([make_event(user_id="u_late", occurred_at=_at(0, 1))])  # an hour earlier
    assert state.view("u_late").session == moved


class _Proxy:
    """A TCP proxy to the shared Redis that the test can take away and bring back."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        server.settimeout(0.05)
        self._sockets = [server]
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._sockets = []


@pytest.fixture
def proxy():
    proxy = _Proxy()
    proxy.start()
    yield proxy
    proxy.stop()


def test_redis_unreachable_at_start_falls_back_to_memory_with_a_warning(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="ottp.realtime.redis_state")
    state = open_state(_Rt(f"redis://127.0.0.1:{closed_port}/{REDIS_DB}"))
    try:
        assert state.backend == "memory"
        state.apply([make_event(user_id="u_private_1", device_id="d_private_1")])
        assert state.view("u_private_1").session.event_count == 1
    finally:
        state.close()
    assert "Redis unreachable" in caplog.text
    assert "u_private_1" not in caplog.text and "d_private_1" not in caplog.text


def test_redis_outage_falls_back_to_memory_and_replays_on_recovery(batch, proxy, redis_db, caplog):
    caplog.set_level(logging.WARNING, logger="ottp.realtime.redis_state")
    events = [e for e in batch["events"] if e.get("user_id") == "u_edge_1"]
    third = len(events) // 3
    state = ResilientState(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", retry_s=0.1)
    try:
        assert state.backend == "redis"
        before = state.apply(events[:third])
        proxy.stop()
        during = state.apply(events[third : 2 * third])
        assert state.backend == "memory" and "Redis unreachable" in caplog.text
        # while away: what happened since the outage began
        assert state.view("u_edge_1").session_count >= 1
        proxy.start()
        _wait_for(lambda: state.backend == "redis", what="the return to Redis")
        after = state.apply(events[2 * third :])
        expected = MemoryState()
        expected_changes = [
            change
            for part in (events[:third], events[third : 2 * third], events[2 * third :])
            for change in expected.apply(part)
        ]
        # nothing lost, nothing reported twice (the replay reports nothing)
        assert before + during + after == expected_changes
        assert state.view("u_edge_1") == expected.view("u_edge_1")
        assert "u_edge_1" not in caplog.text and "Redis is back" in caplog.text
    finally:
        state.close()


def test_rebuild_from_landing_restores_the_state_after_a_restart(batch, fed):
    live, _ = fed
    restarted = MemoryState()
    report = rebuild_from_landing(
        restarted, batch["root"] / "landing", hours=72, now=datetime(2026, 8, 3, tzinfo=UTC)
    )
    assert report.files == 3 and report.events == len(batch["events"])
    for state in live.states():
        assert restarted.view(state.actor_id) == live.view(state.actor_id), state.actor_id
    # a shorter window: the events received in its last day only
    recent = MemoryState()
    now = datetime(2026, 8, 3, tzinfo=UTC)
    report = rebuild_from_landing(recent, batch["root"] / "landing", hours=24, now=now)
    received = [
        e for e in batch["events"]
        if now - timedelta(hours=24) <= datetime.fromisoformat(e["received_at"]) <= now
    ]  # fmt: skip
    assert report.events == len(received) < len(batch["events"])


def test_memory_per_actor(batch, redis_db, record_property):
    """Bytes per actor in process (tracemalloc) and in Redis (MEMORY USAGE), reported."""
    events = batch["events"]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = MemoryState()
        _feed(state, events)
        in_process = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    actors = len(state)
    shared = RedisState(REDIS_URL)
    try:
        _feed(shared, events)
        in_redis = sum(shared.memory_usage(s.actor_id) for s in state.states())
    finally:
        shared.close()
    per_actor = in_process / actors, in_redis / actors
    record_property("bytes_per_actor_memory", round(per_actor[0]))
    record_property("bytes_per_actor_redis", round(per_actor[1]))
    print(
        f"\nlive state: {actors} actors, {len(events)} events over 2 days; "
        f"{per_actor[0]:.0f} B/actor in process, {per_actor[1]:.0f} B/actor in Redis"
    )
    assert 0 < per_actor[0] < 64 * 1024 and 0 < per_actor[1] < 64 * 1024


def test_two_servers_share_the_live_state_in_redis(realtime_server, redis_db):
    """Two ``ottp serve`` processes on one Redis: what one took in, the other's state holds."""
    env = {"OTTP_REDIS_URL": REDIS_URL}
    first, second = realtime_server(env=env), realtime_server(env=env)
    for server in (first, second):
        health = server.session.get(f"{server.url}/health", timeout=10).json()
        assert health["state_backend"] == "redis"
    play = [
        _player(kind, "pb-http", 18, after_s, position, title="t_00009")
        for kind, after_s, position in [("play_start", 0, 0), ("heartbeat", 60, 60)]
    ]
    like = make_event(
        event_type="like",
        user_id="u_edge_1",
        title_id="t_00009",
        properties=None,
        occurred_at=_at(61, 18),
        received_at=_at(62, 18),
    )
    assert first.post_events(play).status_code == 200
    assert second.post_events([like]).status_code == 200
    reader = RedisState(REDIS_URL)
    try:
        view = reader.view("u_edge_1")
    finally:
        reader.close()
    assert view.progress["t_00009"].valid_play_count == 1 and view.liked == ("t_00009",)
    assert view.session.event_count == 3


def test_a_rebuild_while_redis_is_away_fills_memory_and_is_not_replayed(batch, proxy, redis_db):
    proxy.stop()
    state = ResilientState(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", retry_s=0.1)
    try:
        assert state.backend == "memory"
        now = datetime(2026, 8, 3, tzinfo=UTC)
        report = rebuild_from_landing(state, batch["root"] / "landing", hours=72, now=now)
        assert report.events == len(batch["events"])
        assert state.view("u_edge_1").progress["t_00001"].valid_play_count > 0
        proxy.start()
        _wait_for(lambda: state.backend == "redis", what="the return to Redis")
        assert redis_db.dbsize() == 0
        state.apply([make_event(user_id="u_after", occurred_at=_at(0, 22))])
        assert state.view("u_after").session.event_count == 1 and redis_db.dbsize() == 1
    finally:
        state.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_session_impressions_interactions_and_current_title(redis_db, backend):
    """Rail impressions counted per title in the current session, whether the title was
    taken up after its first impression, the session's interactions in time order, the
    title played last; a resent rail counts once; a new session starts them afresh."""

    def rail(seconds: float, titles: list, **extra) -> dict:
        return make_event(
            event_type="rail_impression",
            user_id="u_rail",
            occurred_at=_at(seconds, 4),
            properties={"rail": "trending", "title_ids": titles},
            **extra,
        )

    def player(seconds: float, kind: str, title: str, position: float) -> dict:
        return make_event(
            event_type=kind,
            user_id="u_rail",
            occurred_at=_at(seconds, 4),
            title_id=title,
            playback_id=f"p_{title}",
            position_s=position,
            duration_s=600.0,
            properties={},
        )

    first = rail(0, ["t_a", "t_b", "t_c", 7, None, "t_a"])
    events = [
        first,
        rail(60, ["t_a", "t_b"]),
        make_event(
            event_type="title_click", user_id="u_rail", title_id="t_b", occurred_at=_at(70, 4)
        ),
        player(80, "play_start", "t_b", 0.0),
        player(400, "stop", "t_b", 320.0),
        rail(410, ["t_a", "t_c", "t_d"]),
        player(420, "play_start", "t_c", 0.0),
        player(450, "heartbeat", "t_c", 30.0),
        make_event(event_type="dislike", user_id="u_rail", title_id="t_d", occurred_at=_at(460, 4)),
        make_event(
            event_type="rating",
            user_id="u_rail",
            title_id="t_b",
            occurred_at=_at(470, 4),
            properties={"rating": 4},
        ),
    ]
    state = _state_for(backend)
    try:
        state.apply(events[5:])  # out of order: the late events are placed by time
        state.apply(events[:5] + [first])  # the first rail resent: counted once
        view = state.view("u_rail")
        counts = {t: (i.count, i.clicked) for t, i in view.impressions.items()}
        assert counts == {
            "t_a": (3, False),  # shown three times, never taken up
            "t_b": (2, True),  # clicked after its first impression
            "t_c": (2, True),  # played after it
            "t_d": (1, False),  # disliked is not taken up
        }
        assert view.impressions["t_a"].first_at == datetime.fromisoformat(_at(0, 4))
        assert view.impressions["t_a"].last_at == datetime.fromisoformat(_at(410, 4))
        assert [(i.kind, i.title_id) for i in view.session_interactions] == [
            ("click", "t_b"),
            ("play", "t_b"),
            ("play", "t_c"),
            ("dislike", "t_d"),
            ("rating", "t_b"),
        ]
        assert view.session_interactions[-1].value == 4.0
        assert {i.value for i in view.session_interactions[:-1]} == {None}
        assert view.current_title == "t_c"
        # after the gap a new session: nothing of the last one's impressions or interactions
        later = 4 * 3600
        state.apply([rail(later, ["t_a"])])
        view = state.view("u_rail")
        assert view.session_count == 2 and view.current_title is None
        assert {t: i.count for t, i in view.impressions.items()} == {"t_a": 1}
        assert view.session_interactions == ()
        # a rail without title_ids, or not a list of them, counts nothing
        state.apply(
            [
                rail(later + 5, "t_a"),
                make_event(
                    event_type="rail_impression", user_id="u_rail", occurred_at=_at(later + 6, 4)
                ),
            ]
        )
        assert state.view("u_rail").impressions["t_a"].count == 1
    finally:
        state.close()
