"""POST /v1/events against a real ``ottp serve``: verdicts, caps, durability, exactly-once."""

from __future__ import annotations

import fcntl
import gzip
import json
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests

from ottp import config
from ottp.ingest import load, validate
from ottp.ingest.gzip_check import inspect_file
from ottp.realtime.landing_writer import LandingWriter, gzip_member, recover_orphans, salvage
from tests.conftest import make_event, write_landing
from tests.contract.test_contract import hostile_cases, regression_lines

CAPS = {"OTTP_MAX_BODY_BYTES": str(3 << 20), "OTTP_MAX_LINES": "1000"}


@pytest.fixture(scope="module")
def server(realtime_server_module):
    """One server for the module's tests that need no particular setting."""
    return realtime_server_module(CAPS)


def landed_lines(server) -> list[bytes]:
    """Every complete line in the server's landing files, open ones included."""
    lines = []
    for path in sorted((server.landing_dir / "events").glob("date=*/*")):
        data = path.read_bytes()
        good, tail = salvage(data)
        lines += (gzip.decompress(data[:good]) if good else b"").splitlines()
        lines += tail.splitlines()
    return lines


def landed_ids(server) -> list[str]:
    return [json.loads(line)["event_id"] for line in landed_lines(server)]


def test_health_needs_no_key_and_the_openapi_page_is_served(server):
    health = requests.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["intake"] is True and health.json()["state_backend"] == "memory"
    spec = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    assert "/v1/events" in spec["paths"] and "/health" in spec["paths"]
    assert spec["paths"]["/v1/events"]["post"]["description"]
    assert requests.get(f"{server.url}/docs", timeout=5).status_code == 200


def test_intake_needs_the_key(server):
    url, body = f"{server.url}/v1/events", [make_event()]
    assert requests.post(url, json=body, timeout=5).status_code == 401
    wrong = requests.post(url, json=body, headers={"X-API-Key": "nope"}, timeout=5)
    assert wrong.status_code == 401
    bearer = requests.post(url, json=[], headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bearer.status_code == 401
    good = {"Authorization": f"Bearer {server.api_key}"}
    assert requests.post(url, json=[], headers=good, timeout=5).status_code == 200
    assert landed_ids(server).count(body[0]["event_id"]) == 0


def test_the_service_does_not_start_without_a_key(tmp_path):
    env = config.child_env({"OTTP_API_KEY": None, "OTTP_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "ottp.cli", "serve", "--port", "1"],
        env=env,
        cwd=config.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "OTTP_API_KEY" in done.stderr


def test_a_json_array_is_accepted_and_durable_before_the_answer(server):
    events = [make_event() for _ in range(100)]
    answer = server.post_events(events)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"], result["duplicates"]) == (100, 0, 0)
    assert [f["event_id"] for f in result["lines"]] == [e["event_id"] for e in events]
    # answered: every line is already decodable in the landing file (open or closed)
    landed = set(landed_ids(server))
    assert all(e["event_id"] in landed for e in events)


def test_ndjson_is_accepted_with_crlf_and_without_a_final_newline(server):
    events = [make_event() for _ in range(3)]
    body = "\r\n".join(json.dumps(e) for e in events)
    answer = server.post_events(body, "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    # NDJSON sent as application/json is read as NDJSON too
    more = [make_event() for _ in range(2)]
    answer = server.post_events("\n".join(json.dumps(e) for e in more) + "\n", "application/json")
    assert answer.json()["accepted"] == 2
    landed = set(landed_ids(server))
    assert all(e["event_id"] in landed for e in events + more)


def test_a_missing_received_at_is_the_receipt_time(server):
    absent, null, in_array = make_event(), make_event(received_at=None), make_event()
    del in_array["received_at"]
    deeper = make_event(properties={"page": "home", "received_at": "x"})
    del absent["received_at"], deeper["received_at"]
    before = datetime.now(UTC)
    ndjson = f"{json.dumps(absent)}\n{json.dumps(null)}\n{json.dumps(deeper)}"
    assert server.post_events(ndjson, "application/x-ndjson").json()["accepted"] == 3
    assert (
        server.post_events([in_array, {**null, "event_id": str(uuid.uuid4())}]).json()["accepted"]
        == 2
    )
    after = datetime.now(UTC)
    landed = {json.loads(line)["event_id"]: json.loads(line) for line in landed_lines(server)}
    for event in (absent, null, deeper, in_array):
        stamp = landed[event["event_id"]]["received_at"]
        assert stamp.endswith("Z")
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before - timedelta(seconds=1) <= at <= after
    # what lands is what the reader takes: a line the default makes too long is refused
    longest = json.loads(special_lines()["longest"])
    del longest["received_at"]
    longest["app_version"] += "x" * len('"received_at": "2026-08-01T10:00:01.000Z", ')
    too_long = server.post_events(json.dumps(longest), "application/x-ndjson").json()
    assert too_long["lines"][0]["reason_code"] == "line_too_long"
    # the rest of the client's line is kept as it was sent
    kept = landed[absent["event_id"]]
    assert {k: v for k, v in kept.items() if k != "received_at"} == absent


def test_repeated_event_ids_in_one_body_keep_the_first(server):
    first, other = make_event(), make_event()
    again = {**first, "occurred_at": "2026-08-01T11:00:00.000Z"}
    result = server.post_events([first, other, again]).json()
    assert [f["status"] for f in result["lines"]] == ["accepted", "accepted", "duplicate"]
    assert result["lines"][2]["reason_code"] == "duplicate"
    landed = [json.loads(line) for line in landed_lines(server)]
    copies = [e for e in landed if e["event_id"] == first["event_id"]]
    assert [c["occurred_at"] for c in copies] == [first["occurred_at"]]


def special_lines() -> dict[str, bytes]:
    """Lines the reader or the JSON parse refuses, and the edges around them."""
    base = make_event()
    text = json.dumps(base)

    def padded(size: int) -> bytes:
        event = {**base, "event_id": str(uuid.uuid4()), "app_version": ""}
        event["app_version"] = "x" * (size - len(json.dumps(event)))
        return json.dumps(event).encode()

    return {
        "empty": b"",
        "blank": b"   ",
        "array": b"[1, 2]",
        "string": b'"text"',
        "truncated": text[:40].encode(),
        "not utf-8": b'{"event_id": "\xff\xfe"}',
        "raw CR inside": text[:30].encode() + b"\r" + text[30:].encode(),
        "raw 0x1F inside": text[:30].encode() + b"\x1f" + text[30:].encode(),
        "raw NUL inside": text[:-1].encode() + b', "x": "\x00"}',
        "escaped NUL": json.dumps(
            {**base, "event_id": str(uuid.uuid4()), "app_version": "a\0"}
        ).encode(),
        "NaN": json.dumps(
            {**make_event(), "properties": {"page": "home", "n": float("nan")}}
        ).encode(),
        "BOM inside": b"\xef\xbb\xbf" + json.dumps(make_event()).encode(),
        "deep": ('{"a":' * 2000 + "1" + "}" * 2000).encode(),
        "too long": padded(validate.MAX_LINE_BYTES),
        "longest": padded(validate.MAX_LINE_BYTES - 1),
        "upper-case uuid": json.dumps(make_event(event_id=str(uuid.uuid4()).upper())).encode(),
    }


def loader_verdicts(tmp_path, hostile: list[bytes], special: dict[str, bytes]) -> tuple:
    """What ``ottp load`` says of each line: (reason_code, reason), or None if loaded."""
    landing_dir = tmp_path / "landing"
    write_landing(landing_dir, hostile, name="hostile.ndjson.gz")
    for i, line in enumerate(special.values()):
        # one file each, after a valid line (as in the body): a refused line may
        # not come back as it was written
        lines = [make_event(), line]
        write_landing(landing_dir, lines, name=f"special-{i:03d}.ndjson.gz")
    report = load.load_landing(tmp_path / "warehouse.duckdb", landing_dir)
    assert report.reconciles
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select source_file, raw_line, reason_code, reason from raw.rejected_events"
        ).fetchall()
    finally:
        con.close()
    by_line = {raw.encode(): (code, reason) for f, raw, code, reason in rows if "hostile" in f}
    by_file = {Path(f).name: (code, reason) for f, _, code, reason in rows}
    of_special = [by_file.get(f"special-{i:03d}.ndjson.gz") for i in range(len(special))]
    return [by_line.get(line) for line in hostile], of_special


def test_every_line_gets_the_loaders_verdict(server, tmp_path):
    cases = [c for c in hostile_cases() if c["event"].get("received_at") is not None]
    hostile = list(dict.fromkeys(json.dumps(c["event"]).encode() for c in cases))
    hostile += [json.dumps(e).encode() for _, e, _ in regression_lines()]
    special = special_lines()
    # a valid line first: the body is NDJSON, whatever follows
    body_lines = [json.dumps(make_event()).encode(), *hostile, *special.values()]
    answer = server.post_events(b"\n".join(body_lines) + b"\n", "application/x-ndjson")
    assert answer.status_code == 200, answer.text[:500]
    fates = answer.json()["lines"][1:]
    intake = [None if f["status"] != "rejected" else (f["reason_code"], f["reason"]) for f in fates]
    of_hostile, of_special = loader_verdicts(tmp_path, hostile, special)
    labels = [f"hostile line {i}" for i in range(len(hostile))] + list(special)
    differ = [
        f"{label}: intake {got}, loader {want}"
        for label, got, want in zip(labels, intake, of_hostile + of_special, strict=True)
        if got != want
    ]
    assert not differ, "\n".join(differ)
    # and the contract's own expectation, as a check that the lines were hostile
    expected = {json.dumps(c["event"]).encode(): c["code"] for c in cases}
    assert all(
        v and v[0] == expected[line]
        for line, v in zip(hostile, of_hostile, strict=True)
        if line in expected
    )
    assert [k for k, v in zip(special, of_special, strict=True) if v is None] == [
        "longest",
        "upper-case uuid",
    ]


def test_oversized_bodies_and_too_many_lines_are_refused_whole(server):
    cap = int(CAPS["OTTP_MAX_BODY_BYTES"])
    marker = make_event()
    big = json.dumps(marker).encode() + b"\n" + b" " * cap
    assert server.post_events(big, "application/x-ndjson").status_code == 413

    def chunks():  # no Content-Length: the cap counts what is read
        yield json.dumps(marker).encode() + b"\n"
        for _ in range(cap // 65536 + 2):
            yield b" " * 65536

    try:
        status = server.post_events(chunks(), "application/x-ndjson").status_code
    except requests.ConnectionError:
        status = 413  # the server may close before the client has sent everything
    assert status == 413
    many = [make_event(event_id=marker["event_id"]) for _ in range(int(CAPS["OTTP_MAX_LINES"]) + 1)]
    assert server.post_events(many).status_code == 413
    ndjson = "\n".join(json.dumps(e) for e in many)
    refused = server.post_events(ndjson, "application/x-ndjson")
    assert refused.status_code == 413 and "line" in refused.json()["detail"]
    assert marker["event_id"] not in landed_ids(server)


def test_a_gzip_body_is_inflated_within_the_cap(server):
    events = [make_event() for _ in range(50)]
    body = gzip.compress(json.dumps(events).encode())
    zipped = server.post_events(body, "application/json", {"Content-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.json()["accepted"] == 50
    bomb = gzip.compress(b"[" + b" " * int(CAPS["OTTP_MAX_BODY_BYTES"]) + b"]")
    assert len(bomb) < 10_000
    inflated = server.post_events(bomb, "application/json", {"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    corrupt = server.post_events(body[:-9], "application/json", {"Content-Encoding": "gzip"})
    assert corrupt.status_code == 400
    other = server.post_events(body, "application/json", {"Content-Encoding": "br"})
    assert other.status_code == 415


GARBAGE = [
    b"",
    b"  \n ",
    b"garbage",
    b"null",
    b"42",
    b'"text"',
    b"[1, 2",
    b"[" * 100_000,
    b"\xff\xfe\x00[",
    b"[\xff]",
    b"{not json",
    gzip.compress(b"[]"),
]


def test_a_body_that_is_no_json_array_nor_ndjson_is_a_400(server):
    for body in GARBAGE:
        answer = server.post_events(body, "application/json")
        assert answer.status_code == 400, (body[:20], answer.status_code, answer.text[:200])
        assert answer.json()["detail"]


def test_random_bodies_never_get_a_500(server):
    rng = random.Random(18)
    pieces = [b"[", b"]", b"{", b"}", b'"', b",", b":", b"\n", b"\r", b"\\", b"\x00", b"\xff",
              b"null", b"1e999", b"NaN", b'"event_id"', b'"received_at"', b" ",
              json.dumps(make_event()).encode()]  # fmt: skip
    for i in range(80):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        content_type = ("application/json", "application/x-ndjson", "text/plain")[i % 3]
        answer = server.post_events(body, content_type)
        assert answer.status_code in (200, 400), (body, answer.status_code, answer.text[:200])


def wait_for(condition, timeout_s: float = 20.0, what: str = "condition"):
    """Poll ``condition`` until it returns something true (the poll's pace: 20 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        threading.Event().wait(0.02)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def load_counts(server, warehouse) -> dict[str, int]:
    """``ottp load`` of the server's landing folder, then raw.events per event_id."""
    report = load.load_landing(warehouse, server.landing_dir)
    assert report.reconciles
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("select event_id::varchar, count(*) from raw.events group by 1")
        return dict(rows.fetchall())
    finally:
        con.close()


def test_files_roll_by_age_and_load_exactly_once_even_when_resent(realtime_server, tmp_path):
    server = realtime_server({"OTTP_LANDING_ROLL_SECONDS": "1"})
    batch = [make_event() for _ in range(100)]
    ids = {e["event_id"] for e in batch}
    assert server.post_events(batch).json()["accepted"] == 100
    events_dir = server.landing_dir / "events"
    final = wait_for(lambda: sorted(events_dir.glob("date=*/*.ndjson.gz")), what="a rolled file")
    assert not list(events_dir.glob("date=*/*.open"))
    day = datetime.now(UTC).date().isoformat()
    assert final[0].parent.name == f"date={day}"
    assert re.fullmatch(r"collector-[\w.]+-\d+-\d{8}T\d{6}Z-\d{6}\.ndjson\.gz", final[0].name)
    warehouse = tmp_path / "warehouse.duckdb"
    counts = load_counts(server, warehouse)
    assert {i: counts.get(i) for i in ids} == dict.fromkeys(ids, 1)
    # the client retries the same batch: accepted again, loaded never again
    assert server.post_events(batch).json()["accepted"] == 100
    wait_for(lambda: len(list(events_dir.glob("date=*/*.ndjson.gz"))) == 2, what="second file")
    assert load_counts(server, warehouse) == counts


def send_until_killed(server, clients: int = 4, batches_before_kill: int = 20) -> list[list[dict]]:
    """Batches of 100 from several clients; SIGKILL the server mid-stream; the acknowledged."""
    acked: list[list[dict]] = []
    lock, stop = threading.Lock(), threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                batch = [make_event() for _ in range(100)]
                try:
                    answer = session.post(
                        f"{server.url}/v1/events", json=batch, headers=server.headers(), timeout=30
                    )
                except requests.RequestException:
                    return
                if answer.status_code == 200 and answer.json()["accepted"] == 100:
                    with lock:
                        acked.append(batch)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= batches_before_kill, what="acknowledged batches")
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    return acked


def test_a_sigkill_loses_no_acknowledged_event_and_a_retry_duplicates_none(
    realtime_server, tmp_path
):
    server = realtime_server()
    acked = send_until_killed(server)
    events_dir = server.landing_dir / "events"
    assert list(events_dir.glob("date=*/*.open")), "the kill left no open file to recover"
    server.start()
    assert "recovered orphaned landing file" in server.log()
    assert not list(events_dir.glob("date=*/*.open"))
    warehouse = tmp_path / "warehouse.duckdb"
    counts = load_counts(server, warehouse)
    ids = [e["event_id"] for batch in acked for e in batch]
    assert all(counts.get(i) == 1 for i in ids), "an acknowledged event lost or doubled"
    # the clients retry every batch: nothing is loaded twice
    for batch in acked:
        assert server.post_events(batch).status_code == 200
    server.stop()
    after = load_counts(server, warehouse)
    assert after == counts and set(after.values()) == {1}


# ------------------------------------------------------------------ the writer alone


def test_the_writer_commits_concurrent_requests_and_rolls_by_size_and_day(tmp_path):
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600)
    writer.start()
    today = datetime.now(UTC)
    futures = [writer.submit([b'{"n":%d}' % i, b'{"n":%d}' % -i], today) for i in range(1, 200)]
    for f in futures:
        f.result(10)
    assert writer.open_path is not None and writer.open_path.name.endswith(".ndjson.gz.open")
    writer.submit([b'{"n":0}'], today + timedelta(days=1)).result(10)  # a new receipt day
    writer.roll_bytes = 1
    writer.submit([b'{"n":1000}'], today + timedelta(days=1)).result(10)
    wait_for(lambda: writer.open_path is None, what="roll by size")
    writer.close()
    days = sorted(p.parent.name for p in writer.files_closed)
    assert days == [f"date={today.date()}", f"date={(today + timedelta(days=1)).date()}"]
    lines = [line for p in writer.files_closed for line in gzip.decompress(p.read_bytes()).split()]
    assert len(lines) == 2 * 199 + 2 and len(set(lines)) == len(lines)
    assert all(inspect_file(p) == (None, False) for p in writer.files_closed)


def test_recovery_keeps_every_complete_line_and_leaves_live_files_alone(tmp_path):
    folder = tmp_path / "events" / "date=2026-08-01"
    folder.mkdir(parents=True)
    cut = gzip_member(b'{"n":3}\n{"n":4}\n{"n":5}\n' * 2000)
    orphan = folder / "collector-elsewhere-1-20260801T000000Z-000001.ndjson.gz.open"
    orphan.write_bytes(gzip_member(b'{"n":1}\n{"n":2}\n') + cut[: len(cut) // 2])
    live = folder / "collector-elsewhere-2-20260801T000000Z-000001.ndjson.gz.open"
    live.write_bytes(gzip_member(b'{"n":9}\n'))
    empty = folder / "collector-elsewhere-3-20260801T000000Z-000001.ndjson.gz.open"
    empty.write_bytes(b"")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # its writer is alive
        recovered = recover_orphans(tmp_path)
    assert [p.name for p in recovered] == [orphan.name.removesuffix(".open")]
    assert live.exists() and not orphan.exists() and not empty.exists()
    assert inspect_file(recovered[0]) == (None, False)
    lines = gzip.decompress(recovered[0].read_bytes()).decode().splitlines()
    assert lines[:2] == ['{"n":1}', '{"n":2}'] and len(lines) > 100
    assert all(json.loads(line) for line in lines)  # only whole lines kept


def test_no_personal_data_reaches_the_server_log(server):
    secret_user, secret_device = f"u_{uuid.uuid4().hex}", f"d_{uuid.uuid4().hex}"
    event = make_event(user_id=secret_user, device_id=secret_device)
    assert server.post_events([event]).json()["accepted"] == 1
    bad = json.dumps({**event, "event_id": "not-a-uuid", "country": secret_user})
    assert server.post_events(bad, "application/x-ndjson").json()["rejected"] == 1
    assert server.post_events(f"[{secret_user}", "application/json").status_code == 400
    assert server.post_events([event], headers={"X-Forwarded-For": "203.0.113.9"}).ok
    log = server.log()
    assert "intake ready" in log  # the log is the one the server writes
    for personal in (secret_user, secret_device, "203.0.113.9"):
        assert personal not in log
    assert not re.search(r'127\.0\.0\.1:\d+ - "', log)  # no access log: client addresses
    assert "Traceback" not in log and " 500" not in log


def test_several_worker_processes_share_one_landing_folder(realtime_server, tmp_path):
    server = realtime_server(args=("--workers", "2"))
    sent = []
    for _ in range(20):  # a new connection each: the kernel spreads them over the workers
        batch = [make_event() for _ in range(10)]
        with requests.Session() as session:
            answer = session.post(
                f"{server.url}/v1/events", json=batch, headers=server.headers(), timeout=30
            )
        assert answer.json()["accepted"] == 10
        sent += [e["event_id"] for e in batch]
    assert server.stop() == 0
    events_dir = server.landing_dir / "events"
    assert not list(events_dir.glob("date=*/*.open"))
    counts = load_counts(server, tmp_path / "warehouse.duckdb")
    assert {i: counts.get(i) for i in sent} == dict.fromkeys(sent, 1)


def _valid_lines(n: int) -> list[str]:
    return [json.dumps(make_event()) for _ in range(n)]


def test_overload_is_refused_at_the_door_and_the_bound_frees_as_lines_are_validated():
    import asyncio

    from ottp.realtime.intake import LineValidator, Overloaded

    async def scenario() -> None:
        validator = LineValidator(max_pending=10)  # not started: nothing is validated yet
        waiting = asyncio.ensure_future(validator.verdicts(_valid_lines(6)))
        await asyncio.sleep(0)  # let it queue
        assert validator.pending == 6
        with pytest.raises(Overloaded):
            await validator.verdicts(_valid_lines(6))
        assert validator.pending == 6  # the refused request queued nothing
        validator.start()
        try:
            verdicts = await asyncio.wait_for(waiting, 30)
            assert [v.reason_code for v in verdicts] == [None] * 6
            assert validator.pending == 0
            assert len(await validator.verdicts(_valid_lines(10))) == 10
        finally:
            validator.stop()

    asyncio.run(scenario())


def test_a_request_cancelled_while_waiting_does_not_stop_the_validator():
    import asyncio

    from ottp.realtime.intake import LineValidator

    async def scenario() -> None:
        validator = LineValidator(max_pending=100)
        gone = asyncio.ensure_future(validator.verdicts(_valid_lines(3)))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away before validation
        validator.start()
        try:
            verdicts = await asyncio.wait_for(validator.verdicts(_valid_lines(2)), 30)
            assert len(verdicts) == 2 and validator.alive
            assert validator.pending == 0
        finally:
            validator.stop()

    asyncio.run(scenario())


def test_overload_is_a_503_with_retry_after():
    import asyncio
    from types import SimpleNamespace

    from fastapi import HTTPException

    from ottp.realtime import intake

    class Full:
        async def verdicts(self, texts):
            raise intake.Overloaded("full")

    app = SimpleNamespace(state=SimpleNamespace(validator=Full()))
    lines = intake.split_body(
        "\n".join(_valid_lines(2)).encode(), "application/x-ndjson", 10, "2026-08-01T00:00:00Z"
    )
    with pytest.raises(HTTPException) as refused:
        asyncio.run(intake.land_lines(app, lines, datetime.now(UTC)))
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}
