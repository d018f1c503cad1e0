"""Live scenario triggers: the batch's rule, id and eligibility on a small bundle; fired
once (ledger, this process, Redis between processes), recorded in their landing files
and loaded into raw.live_triggers exactly once; delivered to the CRM table and a
signed webhook with retries; and, on a built warehouse with a real server, both
orders: live first (the ledger keeps the live trigger, the batch detects nothing new)
and batch first (the live path fires nothing)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import redis

from ottp import config
from ottp.crm.targets import SqliteTarget
from ottp.ingest import landing, live_triggers
from ottp.realtime import bundle as bundles
from ottp.realtime import triggers
from ottp.realtime.state import MemoryState
from ottp.realtime.webhook import Delivery, sign
from tests.conftest import make_event
from tests.realtime.test_profile import DRAMA, play, tiny_warehouse

REDIS_URL = "redis://127.0.0.1:6379/0"
NOW = datetime.now(UTC).replace(microsecond=0)
# users of the small bundle besides tiny_warehouse's u_five (5 drama titles, a contact)
AUDIENCE = {
    # user: (in marts.users, is_deleted, a deleted user's pseudonym, a contact)
    "u_five": (True, False, False, True),
    "u_quiet": (True, False, False, False),
    "u_gone": (True, True, False, False),
    "deleted_0123": (True, False, True, False),
}


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def small_warehouse(path: Path, ledger: tuple[str, ...] = ()) -> None:
    """tiny_warehouse (u_five: 5 drama titles) plus categories, users, deletions, contacts;
    u_quiet, u_gone, deleted_0123 and u_unknown (not in users) have the same 5 titles."""
    tiny_warehouse(path)
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute(
        "create table reference.categories as select * from (values "
        "('drama', 'Drama', 'Stories'), ('comedy', 'Comedy', 'Jokes')) "
        "as t(category, display_name, description)"
    )
    con.execute("create table marts.users (user_id varchar, is_deleted boolean)")
    con.execute("create table raw.deleted_users (pseudonym varchar)")
    con.execute("create table exports.crm_contacts (user_id varchar)")
    for user, (_, deleted, pseudonym, contact) in AUDIENCE.items():
        con.execute("insert into marts.users values (?, ?)", [user, deleted])
        if pseudonym:
            con.execute("insert into raw.deleted_users values (?)", [user])
        if contact:
            con.execute("insert into exports.crm_contacts values (?)", [user])
        if user != "u_five":
            con.executemany(
                "insert into marts.plays values (?, 'drama', ?, true)",
                [(user, t) for t in DRAMA[:5]],
            )
    con.executemany(
        "insert into marts.plays values ('u_unknown', 'drama', ?, true)",
        [(t,) for t in DRAMA[:5]],
    )
    for tid in ledger:
        con.execute(
            "insert into exports.crm_trigger_log values (?, 'u_five', 'became_fan', 'drama')",
            [tid],
        )
    con.close()


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("triggers")
    small_warehouse(root / "warehouse.duckdb")
    bundles.publish_bundle(root / "warehouse.duckdb", root / "serving")
    return bundles.load_bundle(root / "serving")


class Recorder:
    """Stands in for the delivery: what the engine handed on."""

    def __init__(self) -> None:
        self.delivered: list[dict] = []
        self.stopped = False

    def submit(self, fired: list[dict]) -> None:
        self.delivered.extend(fired)

    def stop(self) -> None:
        self.stopped = True


def engine_for(landing: Path, bundle, **kwargs) -> triggers.TriggerEngine:
    return triggers.TriggerEngine(landing, lambda: bundle, delivery=Recorder(), **kwargs).start()


def sixth_play(user: str, start: datetime = NOW - timedelta(minutes=30), title=DRAMA[5]):
    return play(user, title, start, 120)


def test_trigger_id_is_duckdbs_md5_of_the_same_text():
    cases = [("u_five", "became_fan", "drama"), ("ü-ser|1", "became_hardcore_fan", "kids & co")]
    con = duckdb.connect()
    for user, scenario, subject in cases:
        expected = con.execute("select md5(? || '|' || ? || '|' || ?)", [user, scenario, subject])
        assert triggers.trigger_id(user, scenario, subject) == expected.fetchone()[0]


def test_the_sixth_distinct_title_fires_became_fan_once_and_records_it(small_bundle, tmp_path):
    live = MemoryState()
    engine = engine_for(tmp_path, small_bundle)
    try:
        # a 20 s play is no valid play; a title the batch counted already counts once
        assert (
            engine.on_changes(
                live.apply(play("u_five", DRAMA[6], NOW - timedelta(hours=2), 20)), live.view
            )
            == []
        )
        assert engine.on_changes(live.apply(sixth_play("u_five", title=DRAMA[2])), live.view) == []
        events = sixth_play("u_five")
        fired = engine.on_changes(live.apply(events), live.view)
        assert len(fired) == 1
        t = fired[0]
        assert t["trigger_id"] == triggers.trigger_id("u_five", "became_fan", "drama")
        assert (t["scenario"], t["subject_type"], t["subject_id"]) == (
            "became_fan",
            "category",
            "drama",
        )
        assert t["subject_name"] == "Drama" and t["category"] == "drama"
        # occurred_at: the sixth title's first valid play's start, as the batch computes it
        assert t["occurred_at"] == events[0]["occurred_at"].replace("T", " ").replace("Z", "000")
        assert t["is_suppressed"] is False
        assert engine.delivery.delivered == fired
        # a seventh title, or the same play resent, fires nothing
        later = NOW - timedelta(minutes=10)
        assert engine.on_changes(live.apply(play("u_five", DRAMA[7], later, 120)), live.view) == []
        assert engine.on_changes(live.apply(events), live.view) == []
    finally:
        engine.close()
    assert engine.delivery.stopped
    # the record: one line in triggers/date=<day>/, read back by a restarted engine
    files = sorted((tmp_path / "triggers").glob("date=*/*.ndjson.gz"))
    assert len(files) == 1
    lines = gzip.decompress(files[0].read_bytes()).decode().splitlines()
    assert [json.loads(line)["trigger_id"] for line in lines] == [t["trigger_id"]]
    restarted = engine_for(tmp_path, small_bundle)
    try:
        assert restarted.is_fired(t["trigger_id"])
        again = MemoryState()
        assert restarted.on_changes(again.apply(sixth_play("u_five")), again.view) == []
    finally:
        restarted.close()


def test_eligibility_is_the_batchs(small_bundle, tmp_path):
    live = MemoryState()
    engine = engine_for(tmp_path, small_bundle)
    try:
        fired = engine.on_changes(live.apply(sixth_play("u_quiet")), live.view)
        # not a contact: recorded as suppressed, never delivered
        assert [(t["user_id"], t["is_suppressed"]) for t in fired] == [("u_quiet", True)]
        assert engine.delivery.delivered == []
        # deleted, a deleted user's pseudonym, not in users (the next build decides): none
        for user in ("u_gone", "deleted_0123", "u_unknown"):
            assert engine.on_changes(live.apply(sixth_play(user)), live.view) == [], user
        # an anonymous visitor is no user
        anonymous = [{**e, "user_id": None, "device_id": "d_anon"} for e in sixth_play("x")]
        assert engine.on_changes(live.apply(anonymous), live.view) == []
        # a condition older than crm_trigger_window_days never fires (the batch's window)
        stale = sixth_play("u_five", NOW - timedelta(days=8))
        assert engine.on_changes(live.apply(stale), live.view) == []
    finally:
        engine.close()


def test_a_deletion_request_seen_live_stops_the_users_triggers(small_bundle, tmp_path):
    live = MemoryState()
    engine = engine_for(tmp_path, small_bundle)
    try:
        request = make_event(
            event_type="deletion_request",
            user_id="u_five",
            occurred_at=(NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            received_at=(NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            properties=None,
        )
        engine.on_changes(live.apply([request]), live.view, [request])
        assert engine.on_changes(live.apply(sixth_play("u_five")), live.view) == []
    finally:
        engine.close()


def test_a_trigger_in_the_batch_ledger_never_fires_live(tmp_path):
    tid = triggers.trigger_id("u_five", "became_fan", "drama")
    small_warehouse(tmp_path / "warehouse.duckdb", ledger=(tid,))
    bundles.publish_bundle(tmp_path / "warehouse.duckdb", tmp_path / "serving")
    b = bundles.load_bundle(tmp_path / "serving")
    assert tid in b.trigger_ids
    live = MemoryState()
    engine = engine_for(tmp_path / "landing", b)
    try:
        assert engine.on_changes(live.apply(sixth_play("u_five")), live.view) == []
    finally:
        engine.close()


def test_two_thresholds_reached_in_one_request_fire_in_the_batchs_order(tmp_path):
    small_warehouse(tmp_path / "warehouse.duckdb")
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "update reference.segment_thresholds set min_titles_watched = 7 "
        "where segment = 'hardcore_fan'"
    )
    con.close()
    bundles.publish_bundle(tmp_path / "warehouse.duckdb", tmp_path / "serving")
    b = bundles.load_bundle(tmp_path / "serving")
    live = MemoryState()
    engine = engine_for(tmp_path / "landing", b)
    # the later-started title arrives first: the batch numbers titles by their start
    seventh = play("u_five", DRAMA[5], NOW - timedelta(minutes=20), 120)
    sixth = play("u_five", DRAMA[7], NOW - timedelta(minutes=40), 120)
    try:
        fired = engine.on_changes(live.apply(seventh + sixth), live.view)
    finally:
        engine.close()
    assert [(t["scenario"], t["occurred_at"][:19]) for t in fired] == [
        ("became_fan", sixth[0]["occurred_at"][:19].replace("T", " ")),
        ("became_hardcore_fan", seventh[0]["occurred_at"][:19].replace("T", " ")),
    ]


def test_two_processes_on_one_redis_fire_a_trigger_once(small_bundle, tmp_path):
    key = f"ottp:test:triggers:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    engines = [
        engine_for(tmp_path / name, small_bundle, redis_url=REDIS_URL, redis_key=key)
        for name in ("one", "two")
    ]
    try:
        # each process saw the same play (two live states): one SADD wins
        results = []
        for engine in engines:
            live = MemoryState()
            results.append(engine.on_changes(live.apply(sixth_play("u_five")), live.view))
        assert sorted(len(r) for r in results) == [0, 1]
        assert client.sismember(
            key, results[0][0]["trigger_id"] if results[0] else results[1][0]["trigger_id"]
        )
    finally:
        for engine in engines:
            engine.close()
        client.delete(key)
        client.close()


def _trigger_line(user: str, category: str = "drama", **overrides) -> str:
    row = {
        "trigger_id": triggers.trigger_id(user, "became_fan", category),
        "user_id": user,
        "scenario": "became_fan",
        "subject_type": "category",
        "subject_id": category,
        "subject_name": "Drama",
        "category": category,
        "cancel_reason": None,
        "cancel_reason_description": None,
        "is_cancel_reason_addressable": None,
        "is_suppressed": False,
        "occurred_at": "2026-12-07 09:00:00.000000",
        "fired_at": "2026-12-07 09:00:01.123456",
        **overrides,
    }
    return json.dumps(row)


def test_the_loader_loads_each_trigger_once_and_rejects_malformed_lines(tmp_path):
    folder = tmp_path / "landing" / "triggers" / "date=2026-12-07"
    folder.mkdir(parents=True)
    lines = [
        _trigger_line("u1"),
        _trigger_line("u1"),  # repeated: a duplicate
        "{not json",
        "[1, 2]",
        _trigger_line("u2", trigger_id="0" * 32),  # not the batch's id
        _trigger_line("u3", fired_at="soon"),
        json.dumps({"trigger_id": "x"}),
        "",
        _trigger_line("u4", "comedy"),
    ]
    (folder / "a.ndjson.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    # a cut file: its whole lines load, the rest is one rejected row
    cut = gzip.compress((_trigger_line("u5") + "\n").encode()) + b"\x1f\x8b\x08garbage"
    (folder / "b.ndjson.gz").write_bytes(cut)
    (folder / "c.ndjson.gz.open").write_bytes(b"")  # still being written: not read
    # the events loader does not read them (it lists the kinds it knows)
    assert landing.discover(tmp_path / "landing") == []
    warehouse = tmp_path / "warehouse.duckdb"
    report = live_triggers.load_live_triggers(warehouse, tmp_path / "landing")
    assert (report.files_loaded, report.lines, report.loaded) == (2, 11, 3)
    assert (report.duplicates, report.rejected) == (1, 7) and report.reconciles
    assert report.rejected_by_reason == {
        "invalid_json": 1,
        "not_an_object": 1,
        "invalid_value": 1,
        "wrong_type": 1,
        "missing_field": 1,
        "empty_line": 1,
        "damaged_gzip": 1,
    }
    again = live_triggers.load_live_triggers(warehouse, tmp_path / "landing")
    assert (again.files_loaded, again.files_skipped, again.lines) == (0, 2, 0)
    # a new file resending a loaded trigger is a duplicate
    (folder / "d.ndjson.gz").write_bytes(gzip.compress((_trigger_line("u1") + "\n").encode()))
    resent = live_triggers.load_live_triggers(warehouse, tmp_path / "landing")
    assert (resent.loaded, resent.duplicates) == (0, 1)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("select user_id, fired_at from raw.live_triggers order by 1").fetchall()
        reasons = con.execute(
            "select line_number, reason from raw.rejected_live_triggers order by source_file, 1"
        ).fetchall()
    finally:
        con.close()
    assert [r[0] for r in rows] == ["u1", "u4", "u5"]
    assert rows[0][1] == datetime(2026, 12, 7, 9, 0, 1, 123456)
    assert (6, "wrong_type: fired_at is not a timestamp") in reasons
    assert (7, "missing_field: user_id") in reasons


class Hook(BaseHTTPRequestHandler):
    """A webhook receiver that fails the first ``fail`` requests with a 503."""

    fail = 2
    received: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers, body))  # case-insensitive names
        status = 503 if len(type(self).received) <= type(self).fail else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def webhook_server():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_delivery_to_the_crm_table_once_and_to_a_signed_webhook_with_retries(
    tmp_path, webhook_server
):
    url = f"http://127.0.0.1:{webhook_server.server_address[1]}/hook"
    rt = dataclasses.replace(config.realtime_settings(), webhook_url=url, webhook_secret="s3cret")
    crm = SqliteTarget(tmp_path / "crm.sqlite")
    delivery = Delivery(rt, target=crm, base_delay_s=0.05).start()
    trigger = json.loads(_trigger_line("u1"))
    try:
        delivery.submit([trigger])
        delivery.submit([trigger])  # again: one CRM row, the webhook gets each delivery
        assert wait_for(lambda: delivery.counts.get(("webhook", "delivered"), 0) == 2)
        assert wait_for(lambda: delivery.counts.get(("crm", "delivered"), 0) == 2)
    finally:
        delivery.stop()
    assert delivery.counts[("webhook", "retried")] == 2
    assert len(Hook.received) == 4
    headers, body = Hook.received[-1]
    stamp = headers["X-OTTP-Timestamp"]
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-OTTP-Signature"] == f"sha256={expected}" == sign("s3cret", stamp, body)
    assert abs(int(stamp) - time.time()) < 60
    assert json.loads(body)["trigger_id"] == trigger["trigger_id"]
    assert "is_suppressed" not in json.loads(body)  # crm_triggers' columns only
    con = sqlite3.connect(tmp_path / "crm.sqlite")
    try:
        rows = con.execute("select trigger_id, user_id, fired_at from crm_live_triggers").fetchall()
    finally:
        con.close()
    assert rows == [(trigger["trigger_id"], "u1", "2026-12-07 09:00:01.123456")]


def test_a_webhook_that_never_answers_is_given_up_after_the_attempts(tmp_path, webhook_server):
    Hook.fail = 100
    url = f"http://127.0.0.1:{webhook_server.server_address[1]}/hook"
    rt = dataclasses.replace(config.realtime_settings(), webhook_url=url, webhook_secret="k")
    delivery = Delivery(
        rt, target=SqliteTarget(tmp_path / "crm.sqlite"), attempts=3, base_delay_s=0.01
    )
    delivery.start()
    try:
        delivery.submit([json.loads(_trigger_line("u1"))])
        assert wait_for(lambda: delivery.counts.get(("webhook", "given_up"), 0) == 1)
    finally:
        delivery.stop()
        Hook.fail = 2
    assert len(Hook.received) == 3


# ---------------------------------------------------------------------------
# Both orders on a built warehouse, with a real server

NO_TESTS = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")

# (user, category, titles to play) for a contact short of fan: the most titles already
# watched first, fewest events to send
CANDIDATES = """
with valid as (
    select user_id, category, count(distinct title_id) as n
    from marts.plays where is_valid_play and category is not null group by all
),
pairs as (
    select contacts.user_id, cats.category, coalesce(valid.n, 0) as n
    from exports.crm_contacts as contacts
    cross join (select distinct category from marts.titles) as cats
    left join valid using (user_id, category)
),
unplayed as (
    select pairs.user_id, pairs.category, pairs.n, titles.title_id
    from pairs
    join marts.titles as titles
        on titles.category = pairs.category and titles.is_available
    where not exists (
        select 1 from marts.plays as p
        where p.user_id = pairs.user_id and p.title_id = titles.title_id
    )
)
select user_id, category, n, list(title_id order by title_id) as titles
from unplayed where n < 6 group by all having count(*) >= 6 - n
order by n desc, user_id, category
"""


def plays_of(user: str, titles: list[str], start: datetime) -> list[dict]:
    return [
        e
        for i, t in enumerate(titles)
        for e in play(user, t, start + timedelta(minutes=5 * i), 120)
    ]


def write_landing(folder: Path, events: list[dict]) -> None:
    day = folder / "events" / f"date={NOW.date().isoformat()}"
    day.mkdir(parents=True, exist_ok=True)
    text = "\n".join(json.dumps(e) for e in events) + "\n"
    (day / f"batch-{uuid.uuid4().hex}.ndjson.gz").write_bytes(gzip.compress(text.encode()))


def query(path: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def both_orders(tmp_path_factory, realtime_server_module):
    """Build; user B's sixth title reaches the batch (build 2); a bundle; a server where
    user A's sixth title is played live and B's same plays are sent again; then the
    events and the live triggers are loaded and build 3 runs."""
    from ottp import privacy
    from ottp.ingest import load
    from ottp.simulator import simulate
    from tests.crm.test_exports import STAND_IN_ML, dbt

    root = tmp_path_factory.mktemp("both_orders")
    mp = pytest.MonkeyPatch()
    mp.setenv("OTTP_DATA_DIR", str(root))
    mp.setenv("OTTP_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    mp.delenv("OTTP_BUNDLE_DIR", raising=False)
    path = root / "warehouse.duckdb"
    simulate(root / "landing", users=40, titles=120, days=3, seed=5, dirty_rate=0.0)
    load.load_landing(path, root / "landing")
    dbt("build", "--exclude", "path:models/exports", *NO_TESTS)
    con = duckdb.connect(str(path))
    con.execute(STAND_IN_ML)
    con.close()
    privacy.pseudonymise_deleted_users(path)
    dbt("build", "--select", "path:models/exports", *NO_TESTS)

    rows = query(path, CANDIDATES)
    a = rows[0]
    b = next(r for r in rows if r[0] != a[0])
    out = {"a": a[:2], "b": b[:2]}
    a_events = plays_of(a[0], a[3][: 6 - a[2]], NOW - timedelta(minutes=50))
    b_events = plays_of(b[0], b[3][: 6 - b[2]], NOW - timedelta(hours=3))
    out["a_sixth_start"] = [e for e in a_events if e["event_type"] == "play_start"][-1][
        "occurred_at"
    ]

    # batch first: B's plays arrive through the batch path only
    write_landing(root / "batch_landing", b_events)
    load.load_landing(path, root / "batch_landing")
    dbt("build", "--select", "+crm_trigger_log", "+crm_triggers", *NO_TESTS)
    out["ledger_after_batch"] = query(
        path, "select trigger_id, fired_at from exports.crm_trigger_log"
    )
    bundle_dir = root / "serving"
    bundles.publish_bundle(path, bundle_dir)

    server = realtime_server_module(
        env={"OTTP_BUNDLE_DIR": str(bundle_dir), "CRM_DATABASE_URL": None},
        data_dir=root / "server",
    )
    started = time.monotonic()
    answer = server.post_events(a_events)
    out["a_seconds"] = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["accepted"] == len(a_events), answer.text
    answer = server.post_events(b_events)
    assert answer.status_code == 200, answer.text
    crm = root / "server" / "crm" / "crm.sqlite"

    def crm_rows():
        if not crm.exists():
            return []
        con = sqlite3.connect(crm)
        try:
            return con.execute("select trigger_id, user_id from crm_live_triggers").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    wait_for(lambda: crm_rows() != [], timeout=20)
    out["crm_rows"] = crm_rows()
    server.stop()
    out["server_log"] = server.log()
    files = sorted((root / "server" / "landing" / "triggers").glob("date=*/*.ndjson.gz"))
    out["live_lines"] = [
        json.loads(line)
        for f in files
        for line in gzip.decompress(f.read_bytes()).decode().splitlines()
    ]

    load.load_landing(path, root / "server" / "landing")
    out["loaded"] = live_triggers.load_live_triggers(path, root / "server" / "landing")
    dbt("build", "--select", "+crm_trigger_log", "+crm_triggers", *NO_TESTS)
    out["path"] = path
    yield out
    mp.undo()


def test_live_first_the_ledger_keeps_the_live_trigger_and_the_batch_fires_nothing_new(
    both_orders,
):
    user, category = both_orders["a"]
    tid = triggers.trigger_id(user, "became_fan", category)
    live = [t for t in both_orders["live_lines"] if t["user_id"] == user]
    assert [t["trigger_id"] for t in live] == [tid]
    assert both_orders["crm_rows"] == [(tid, user)]
    assert both_orders["loaded"].loaded == 1 and both_orders["loaded"].reconciles
    path = both_orders["path"]
    ledger = query(
        path,
        "select fired_at, occurred_at, is_suppressed, subject_name from exports.crm_trigger_log "
        "where trigger_id = ?",
        [tid],
    )
    fired_at = datetime.fromisoformat(live[0]["fired_at"])
    occurred_at = datetime.fromisoformat(live[0]["occurred_at"])
    assert ledger == [(fired_at, occurred_at, False, live[0]["subject_name"])]
    # the batch now holds the condition too: a fan, the sixth title first played when the
    # live trigger says (its rule would have detected this trigger_id)
    segment = query(
        path,
        "select segment from marts.user_category_segments where user_id = ? and category = ?",
        [user, category],
    )
    assert segment == [("fan",)]
    sixth = query(
        path,
        "select first_played_at from (select title_id, min(started_at) as first_played_at "
        "from marts.plays where is_valid_play and user_id = ? and category = ? group by 1) "
        "order by first_played_at, title_id limit 1 offset 5",
        [user, category],
    )
    assert sixth == [(occurred_at,)]
    assert sixth[0][0] == datetime.fromisoformat(both_orders["a_sixth_start"].rstrip("Z"))
    assert query(path, "select count(*) from exports.crm_triggers where trigger_id = ?", [tid]) == [
        (1,)
    ]
    assert user not in both_orders["server_log"]


def test_batch_first_the_same_plays_sent_live_fire_nothing(both_orders):
    user, category = both_orders["b"]
    tid = triggers.trigger_id(user, "became_fan", category)
    batch_fired = [r for r in both_orders["ledger_after_batch"] if r[0] == tid]
    assert len(batch_fired) == 1
    assert all(t["user_id"] != user for t in both_orders["live_lines"])
    assert query(
        both_orders["path"],
        "select fired_at from exports.crm_trigger_log where trigger_id = ?",
        [tid],
    ) == [(batch_fired[0][1],)]
