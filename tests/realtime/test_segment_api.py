"""Segment's tracking API on a real ``ottp serve``, driven by Segment's own Python SDK.

The SDK (``segment-analytics-python``) is used unchanged, pointed at the
server with the API key as write key; its HTTP session is wrapped only to read
the answers it receives. What it sends must land as contract events that
``ottp load`` loads with no rejection.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests
from segment.analytics import Client
from segment.analytics import request as sdk_request

from ottp import config
from ottp.ingest import identities, load
from ottp.realtime.landing_writer import salvage
from tests.conftest import write_landing
from tests.realtime.test_intake import landed_lines

CONTEXT = {
    "device": {"type": "android"},
    "app": {"version": "5.12.1"},
    "location": {"country": "FR"},
}
USER, DEVICE, TITLE = "u_000042", "d_0000042", "t_00007"
NODE_CLIENT = Path(__file__).with_name("segment_node")


@pytest.fixture(scope="module")
def server(realtime_server_module):
    return realtime_server_module()


@pytest.fixture
def answers(monkeypatch):
    """The answers the SDK's HTTP session receives, in order (the SDK itself is untouched)."""
    seen: list[requests.Response] = []
    original = sdk_request._session.post

    def post(*args, **kwargs):
        response = original(*args, **kwargs)
        seen.append(response)
        return response

    monkeypatch.setattr(sdk_request._session, "post", post)
    return seen


def sdk(server, errors: list) -> Client:
    return Client(server.api_key, host=server.url, upload_interval=0.05, max_retries=1,
                  on_error=lambda exc, batch: errors.append(exc), gzip=True)  # fmt: skip


def viewing_session(client: Client, start: datetime, playback_id: str) -> int:
    """identify, two pages, a click, a five-minute playback with heartbeats, a rating.

    The playhead advances with the wall clock (one heartbeat per 60 s of play),
    as the contract's player events do. Returns the number of contract events.
    """
    ids = {"user_id": USER, "anonymous_id": DEVICE, "context": {**CONTEXT}}

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    client.identify(traits={"plan": "premium"}, timestamp=at(0), **ids)
    client.page(name="Home", timestamp=at(1), **ids)
    click = {"content_asset_id": TITLE, "rail": "trending", "rank": 2}
    client.track(event="Title Clicked", properties=click, timestamp=at(5), **ids)
    client.page(name="Title", properties={"content_asset_id": TITLE}, timestamp=at(6), **ids)
    video = {"session_id": playback_id, "content_asset_id": TITLE, "total_length": 300,
             "livestream": False, "video_player": "exoplayer"}  # fmt: skip
    t0 = 10
    client.track(event="Video Playback Started", properties={**video, "position": 0},
                 timestamp=at(t0), **ids)  # fmt: skip
    for position in (60, 120, 180, 240):
        client.track(event="Video Content Playing", properties={**video, "position": position},
                     timestamp=at(t0 + position), **ids)  # fmt: skip
    client.track(event="Video Playback Completed", properties={**video, "position": 300},
                 timestamp=at(t0 + 300), **ids)  # fmt: skip
    rated = {"content_asset_id": TITLE, "rating": 5}
    client.track(event="Title Rated", properties=rated, timestamp=at(t0 + 310), **ids)
    return 10  # all but the identify


def raw_events(warehouse) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "select event_type, user_id, device_id, platform, title_id, playback_id, position_s"
            " from raw.events order by occurred_at"
        ).fetchall()
    finally:
        con.close()


def check_session(server, warehouse, start: datetime, sent: int, retried: int = 0) -> None:
    """The session landed skew-corrected, and ``ottp load`` loads it with no rejection."""
    landed = [json.loads(line) for line in landed_lines(server)]
    assert len(landed) == sent + 2 * retried
    play_start = next(e for e in landed if e["event_type"] == "play_start")
    stamped = datetime.fromisoformat(play_start["occurred_at"])
    assert abs(stamped - (start + timedelta(seconds=10))) < timedelta(seconds=5)
    assert play_start["platform"] == "android" and play_start["country"] == "FR"

    server.stop()  # closes (renames) the open landing file
    report = load.load_landing(warehouse, server.landing_dir)
    assert report.reconciles and report.rejected == 0
    assert (report.loaded, report.duplicates) == (sent + retried, retried)
    rows = raw_events(warehouse)
    session = [r for r in rows if r[0] != "like"]
    assert [r[0] for r in session] == ["page_view", "title_click", "page_view", "play_start",
        "heartbeat", "heartbeat", "heartbeat", "heartbeat", "complete", "rating"]  # fmt: skip
    assert {(r[1], r[2], r[3]) for r in rows} == {(USER, DEVICE, "android")}
    player = [r for r in session if r[5] is not None]
    assert [r[6] for r in player] == [0, 60, 120, 180, 240, 300]
    assert {r[4] for r in player} == {TITLE}


def test_a_viewing_session_sent_by_the_python_sdk_loads_with_no_rejection(
    realtime_server, answers, tmp_path
):
    server = realtime_server()
    errors: list = []
    client = sdk(server, errors)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sent = viewing_session(client, start, str(uuid.uuid4()))
    client.flush()
    # a retry: the same messageIds again, in another batch
    retried = [str(uuid.uuid4()) for _ in range(3)]
    for _ in range(2):
        for message_id in retried:
            client.track(USER, "Title Liked", {"content_asset_id": TITLE}, {**CONTEXT},
                         anonymous_id=DEVICE, message_id=message_id)  # fmt: skip
        client.flush()
    client.shutdown()
    assert errors == [] and answers and all(a.status_code == 200 for a in answers)
    bodies = [a.json() for a in answers]
    assert all(b["success"] is True and b["rejected"] == 0 for b in bodies)
    assert sum(b["skipped"] for b in bodies) == 0
    assert sum(b["accepted"] for b in bodies) == sent + 1 + 2 * len(retried)  # + the identify
    check_session(server, tmp_path / "warehouse.duckdb", start, sent, len(retried))
    report = identities.load_identities(tmp_path / "warehouse.duckdb", server.landing_dir)
    assert (report.loaded, report.rejected, report.reconciles) == (1, 0, True)


@pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_CLIENT / "node_modules").is_dir(),
    reason="needs node and `npm ci --prefix tests/realtime/segment_node`",
)
@pytest.mark.parametrize("sdk_name", ["segment", "rudderstack"])
def test_the_same_session_sent_by_a_node_sdk_loads_the_same(realtime_server, tmp_path, sdk_name):
    """@segment/analytics-node and @rudderstack/rudder-sdk-node, as they are."""
    server = realtime_server()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    args = {"sdk": sdk_name, "host": server.url, "writeKey": server.api_key,
            "start": start.isoformat(), "playbackId": str(uuid.uuid4()), "userId": USER,
            "deviceId": DEVICE, "titleId": TITLE}  # fmt: skip
    done = subprocess.run(["node", str(NODE_CLIENT / "send_session.mjs"), json.dumps(args)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # analytics-node's messageIds are not UUIDs ("node-next-..."): event ids are their UUID5
    check_session(server, tmp_path / "warehouse.duckdb", start, 10)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def message(event: str = "Title Liked", **overrides) -> dict:
    return {"type": "track", "event": event, "messageId": str(uuid.uuid4()), "userId": USER,
            "anonymousId": DEVICE, "context": CONTEXT,
            "properties": {"content_asset_id": TITLE}, **overrides}  # fmt: skip


def test_an_unmappable_event_is_rejected_with_its_reason_and_logged_without_ids(server, answers):
    errors: list = []
    client = sdk(server, errors)
    client.track(
        USER, "Poster Hovered", {"content_asset_id": TITLE}, {**CONTEXT}, anonymous_id=DEVICE
    )
    client.track(USER, "Title Rated", {"content_asset_id": TITLE, "rating": "5"}, {**CONTEXT},
                 anonymous_id=DEVICE)  # fmt: skip
    client.flush()
    client.shutdown()
    fates = [m for a in answers for m in a.json()["messages"]]
    assert errors == [] and [f["status"] for f in fates] == ["rejected", "rejected"]
    assert (
        fates[0]["reason"] == "unmapped_event: track event 'Poster Hovered' is not in the mapping"
    )
    assert fates[1]["reason"] == "wrong_type: properties.rating is not an integer"
    log = server.log()
    assert "unmapped_event" in log and USER not in log and DEVICE not in log


def test_write_key_authentication(server):
    url = f"{server.url}/v1/track"
    assert requests.post(url, json=message(), timeout=10).status_code == 401
    wrong = requests.post(url, json=message(), headers=basic("nope"), timeout=10)
    assert wrong.status_code == 401 and wrong.json()["success"] is False
    in_body = requests.post(url, json={**message(), "writeKey": server.api_key}, timeout=10)
    assert in_body.status_code == 200 and in_body.json()["accepted"] == 1
    good = requests.post(url, json=message(), headers=basic(server.api_key), timeout=10)
    assert good.json() == {"success": True, "accepted": 1, "duplicates": 0, "skipped": 0,
                           "rejected": 0, "messages": []}  # fmt: skip


def test_single_calls_batches_duplicates_and_bad_bodies(server):
    headers = basic(server.api_key)
    page = {"messageId": str(uuid.uuid4()), "anonymousId": "d_anon", "name": "Browse",
            "context": {"library": {"name": "analytics.js"}}}  # fmt: skip
    for call in ("page", "screen"):
        answer = requests.post(f"{server.url}/v1/{call}", json={**page, "messageId":
                               str(uuid.uuid4())}, headers=headers, timeout=10)  # fmt: skip
        assert answer.json()["accepted"] == 1
    ident = {"userId": USER, "anonymousId": DEVICE, "messageId": "m-1", "traits": {}}
    stored = requests.post(f"{server.url}/v1/identify", json=ident, headers=headers, timeout=10)
    assert (stored.json()["accepted"], stored.json()["skipped"]) == (1, 0)
    twice = message()
    batch = {"batch": [twice, twice, message(anonymousId=None)], "sentAt": None}
    body = gzip.compress(json.dumps(batch).encode())
    answer = requests.post(f"{server.url}/v1/batch", data=body, timeout=10,
                           headers={**headers, "Content-Encoding": "gzip"}).json()  # fmt: skip
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 1, 1)
    assert [m["index"] for m in answer["messages"]] == [1, 2]
    assert answer["messages"][0]["reason"] == "duplicate: messageId already in this batch"
    assert answer["messages"][1]["reason"].startswith("missing_field: device_id")
    for bad in (b"{not json", b'{"batch": 3}', b"[]"):
        got = requests.post(f"{server.url}/v1/batch", data=bad, headers=headers, timeout=10)
        assert got.status_code == 400 and got.json()["success"] is False
        # without the key, a body is not judged
        anonymous = requests.post(f"{server.url}/v1/batch", data=bad, timeout=10)
        assert anonymous.status_code == 401


def test_a_separate_write_key_replaces_the_api_key_for_trackers(realtime_server):
    server = realtime_server({"OTTP_SEGMENT_WRITE_KEY": "segment-write-key-42"})
    url = f"{server.url}/v1/track"
    ok = requests.post(url, json=message(), headers=basic("segment-write-key-42"), timeout=10)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    api_key = requests.post(url, json=message(), headers=basic(server.api_key), timeout=10)
    assert api_key.status_code == 401
    # the API key still guards the contract's own intake
    assert server.post_events([]).status_code == 200


PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip


def test_no_cors_headers_unless_origins_are_set(server):
    origin = {"Origin": "http://shop.example"}
    preflight = requests.options(f"{server.url}/v1/batch", headers={**origin, **PREFLIGHT},
                                 timeout=10)  # fmt: skip
    assert preflight.status_code == 405  # no middleware: OPTIONS is not a route
    answer = requests.post(f"{server.url}/v1/track", json=message(),
                           headers={**basic(server.api_key), **origin}, timeout=10)  # fmt: skip
    assert answer.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in answer.headers)


def test_cors_lets_the_listed_origins_post_from_a_browser(realtime_server):
    app_origin = "http://app.example:8080"
    server = realtime_server({"OTTP_CORS_ORIGINS": f"{app_origin}, https://tv.example"})
    url = f"{server.url}/v1/batch"
    preflight = requests.options(url, headers={"Origin": app_origin, **PREFLIGHT}, timeout=10)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == app_origin
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    body = {"batch": [message()], "sentAt": None}
    posted = requests.post(url, json=body, timeout=10,
                           headers={**basic(server.api_key), "Origin": app_origin})  # fmt: skip
    assert posted.json()["accepted"] == 1
    assert posted.headers["access-control-allow-origin"] == app_origin
    # an origin not listed gets no grant: the browser blocks the call
    other = requests.options(url, headers={"Origin": "http://evil.example", **PREFLIGHT},
                             timeout=10)  # fmt: skip
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    # a header outside the list is refused at the preflight
    odd = {**PREFLIGHT, "Access-Control-Request-Headers": "authorization,x-forwarded-for"}
    assert (
        requests.options(url, headers={"Origin": app_origin, **odd}, timeout=10).status_code == 400
    )
    # the key is still asked for
    keyless = requests.post(url, json=body, headers={"Origin": app_origin}, timeout=10)
    assert keyless.status_code == 401


@pytest.mark.parametrize("bad", ["app.example", "http://app.example/", "ftp://app.example"])
def test_a_cors_origin_that_is_not_an_origin_stops_the_settings(monkeypatch, bad):
    monkeypatch.setenv("OTTP_CORS_ORIGINS", f"http://ok.example,{bad}")
    with pytest.raises(ValueError, match="OTTP_CORS_ORIGINS"):
        config.realtime_settings()
    monkeypatch.setenv("OTTP_CORS_ORIGINS", "*")
    assert config.realtime_settings().cors_origins == ("*",)


def test_the_batch_level_context_is_merged_into_each_message_key_by_key(server):
    headers = basic(server.api_key)
    shared = {"device": {"type": "android"}, "app": {"version": "5.12.1"},
              "location": {"country": "FR"}}  # fmt: skip
    plain = {k: v for k, v in message().items() if k != "context"}  # takes the batch's
    own_device = message(context={"device": {"type": "ios"}})  # wins for device only
    null_context = message(context=None)  # null: takes the batch's
    tv = message(context={"device": {"type": "tv"}, "app": {"version": "1.0"},
                          "location": {"country": "DE"}})  # fmt: skip
    body = {"batch": [plain, own_device, null_context, tv], "context": shared,
            "integrations": {"All": True}, "sentAt": None}  # fmt: skip
    answer = requests.post(f"{server.url}/v1/batch", json=body, headers=headers, timeout=10)
    assert answer.json()["accepted"] == 4
    landed = {e["event_id"]: e for e in map(json.loads, landed_lines(server))}
    got = [landed[m["messageId"]] for m in (plain, own_device, null_context, tv)]
    assert [(e["platform"], e["app_version"], e["country"]) for e in got] == [
        ("android", "5.12.1", "FR"), ("ios", "5.12.1", "FR"), ("android", "5.12.1", "FR"),
        ("tv", "1.0", "DE")]  # fmt: skip
    # without the batch's context, the message alone: no platform, rejected
    alone = requests.post(f"{server.url}/v1/batch", json={"batch": [message(context={})]},
                          headers=headers, timeout=10).json()  # fmt: skip
    assert alone["messages"][0]["reason"].startswith("missing_field: platform")
    for bad in ("android", ["x"]):
        wrong = requests.post(f"{server.url}/v1/batch", headers=headers, timeout=10,
                              json={"batch": [message()], "context": bad})  # fmt: skip
        assert wrong.status_code == 400
        assert wrong.json()["message"] == "batch-level context is not a JSON object"


def identity_lines(server) -> list[dict]:
    found = []
    for path in sorted((server.landing_dir / "identities").glob("date=*/*")):
        good, tail = salvage(path.read_bytes())
        data = gzip.decompress(path.read_bytes()[:good]) if good else b""
        found += [json.loads(line) for line in (data + tail).splitlines()]
    return found


def test_identify_is_stored_as_an_identity_and_loaded_once(realtime_server, tmp_path):
    server = realtime_server()
    url, headers = f"{server.url}/v1/batch", basic(server.api_key)
    sent_at = datetime.now(UTC).replace(microsecond=0)
    ident = {"type": "identify", "messageId": str(uuid.uuid4()), "userId": USER,
             "anonymousId": DEVICE, "traits": {"email": "someone@example.com"},
             "timestamp": (sent_at - timedelta(minutes=1)).isoformat()}  # fmt: skip
    by_device_id = {"type": "identify", "messageId": "ajs-next-1", "userId": "u_000043",
                    "context": {"device": {"id": "d_tv_1"}}}  # fmt: skip
    bad = [{"type": "identify", "messageId": "m-2", "anonymousId": DEVICE},
           {"type": "identify", "messageId": "m-3", "userId": 42, "anonymousId": DEVICE},
           {"type": "identify", "messageId": "m-4", "userId": USER},
           {"type": "identify", "userId": USER, "anonymousId": DEVICE}]  # fmt: skip
    body = {"batch": [ident, ident, by_device_id, *bad], "sentAt": sent_at.isoformat()}
    answer = requests.post(url, json=body, headers=headers, timeout=10).json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 1, 4)
    assert [m["reason"] for m in answer["messages"]] == [
        "duplicate: messageId already in this batch",
        "missing_field: user_id (userId)",
        "wrong_type: user_id (userId) is not a string",
        "missing_field: device_id (anonymousId or context.device.id)",
        "missing_field: message_id (messageId)",
    ]
    # resent in another request: landed again, loaded once
    again = requests.post(url, json={"batch": [ident]}, headers=headers, timeout=10)
    assert again.json()["accepted"] == 1
    lines = identity_lines(server)
    assert [(x["message_id"], x["user_id"], x["device_id"]) for x in lines] == [
        (ident["messageId"], USER, DEVICE), ("ajs-next-1", "u_000043", "d_tv_1"),
        (ident["messageId"], USER, DEVICE)]  # fmt: skip
    assert set(lines[0]) == set(identities.FIELDS)  # traits are not kept
    received = datetime.fromisoformat(lines[0]["received_at"])
    # the device's clock moved onto the collector's, as for events
    identified = datetime.fromisoformat(lines[0]["identified_at"])
    assert abs(identified - (received - timedelta(minutes=1))) < timedelta(milliseconds=2)

    server.stop()
    warehouse = tmp_path / "warehouse.duckdb"
    report = identities.load_identities(warehouse, server.landing_dir)
    assert (report.lines, report.loaded, report.duplicates, report.rejected) == (3, 2, 1, 0)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select message_id, user_id, device_id from raw.identities"
                           " order by user_id").fetchall()  # fmt: skip
    assert rows == [(ident["messageId"], USER, DEVICE), ("ajs-next-1", "u_000043", "d_tv_1")]
    assert identities.load_identities(warehouse, server.landing_dir).files_skipped == 1


def test_the_identity_loader_rejects_bad_lines_with_reasons(tmp_path):
    good = {
        "message_id": "m-1",
        "user_id": USER,
        "device_id": DEVICE,
        "identified_at": "2026-12-07T10:00:00.000Z",
        "received_at": "2026-12-07T10:00:01.000Z",
    }
    lines = [good, good, "{not json", "", "[1]", {**good, "message_id": "m-2", "user_id": 7},
             {**good, "message_id": "m-3", "identified_at": "yesterday"},
             {**good, "message_id": "m-4", "device_id": None}]  # fmt: skip
    write_landing(tmp_path / "landing", lines, kind=identities.KIND, name="a.ndjson.gz")
    report = identities.load_identities(tmp_path / "w.duckdb", tmp_path / "landing")
    assert report.reconciles and (report.loaded, report.duplicates, report.rejected) == (1, 1, 6)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        reasons = con.execute("select line_number, reason from raw.rejected_identities"
                              " order by 1").fetchall()  # fmt: skip
    assert reasons == [(3, "invalid_json"), (4, "empty_line"), (5, "not_an_object: ARRAY"),
                       (6, "wrong_type: user_id is not a string"),
                       (7, "wrong_type: identified_at is not a timestamp"),
                       (8, "missing_field: device_id")]  # fmt: skip


def test_identities_that_cannot_be_written_are_a_503():
    import asyncio
    from concurrent.futures import Future
    from types import SimpleNamespace

    from fastapi import HTTPException

    from ottp.contract import segment
    from ottp.realtime import segment_api

    class BrokenWriter:
        def submit(self, lines, received_at):
            done = Future()
            done.set_exception(OSError("disk full"))
            return done

    ident = {"type": "identify", "userId": USER, "anonymousId": DEVICE, "messageId": "m-1"}
    for writer in (BrokenWriter(), None):
        app = SimpleNamespace(state=SimpleNamespace(segment_mapping=segment.load_mapping(),
                                                    identities=writer))  # fmt: skip
        with pytest.raises(HTTPException) as raised:
            asyncio.run(segment_api._land_identities(app, [ident], datetime.now(UTC), None))
        assert raised.value.status_code == 503
