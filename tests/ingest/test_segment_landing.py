"""Segment/RudderStack export files in the landing folder (``landing/segment/``).

The simulator's Segment-format files give the same marts as its native files of
the same seed; a tracking call gives the same contract event through the
collector's mapping and through an export file; every hostile line of an export
file is counted once, with its reason.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from ottp.config import DBT_PROJECT_DIR, dbt_executable
from ottp.contract import segment
from ottp.ingest import landing, load, segment_files
from ottp.realtime import segment_api
from ottp.simulator import simulate
from tests.conftest import DBT_RELATIVE_WAREHOUSE, dbt_folder_env

SIM = dict(users=80, titles=100, days=6, seed=23, dirty_rate=0.03)
MARTS_DIR = DBT_PROJECT_DIR / "models" / "marts"
# what differs between two loads of the same events: where and when they were loaded
LOAD_COLUMNS = "* exclude (source_file, load_id, loaded_at)"


@dataclass
class Built:
    warehouses: dict[str, Path]  # format -> warehouse
    reports: dict[str, load.LoadReport]
    summaries: dict[str, object]


def _dbt_build(warehouse: Path, target: Path) -> subprocess.Popen:
    """Seeds and every model up to the marts (no tests: the other suites run them).

    Run in the warehouse's folder, from the session's saved parse in ``target``."""
    assert warehouse.name == DBT_RELATIVE_WAREHOUSE
    cmd = [dbt_executable(), "build", "--select", "+path:models/marts", "--exclude", "exports",
           "--exclude-resource-type", "test", "unit_test",
           "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target-path", str(target), "--log-path", str(target / "logs")]  # fmt: skip
    return subprocess.Popen(
        cmd,
        cwd=warehouse.parent,
        env=dbt_folder_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, dbt_saved_parse) -> Built:
    root = tmp_path_factory.mktemp("segment_landing")
    warehouses, reports, summaries, builds = {}, {}, {}, {}
    for fmt in ("native", "segment"):
        summaries[fmt] = simulate(root / fmt / "landing", fmt=fmt, **SIM)
        warehouses[fmt] = root / fmt / "warehouse.duckdb"
        reports[fmt] = load.load_landing(warehouses[fmt], root / fmt / "landing")
        builds[fmt] = _dbt_build(warehouses[fmt], dbt_saved_parse(root / fmt / "target"))
    for fmt, proc in builds.items():  # both builds run side by side
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"dbt build ({fmt}) failed:\n{out[-6000:]}"
    return Built(warehouses, reports, summaries)


def _both(built: Built) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for fmt, path in built.warehouses.items():
        con.execute(f"attach '{path}' as {fmt} (read_only)")
    return con


def test_the_simulator_writes_segment_files_in_their_own_folder(built):
    files = built.summaries["segment"].event_files
    assert files and all(f.parent.parent.name == "segment" and f.name.endswith(".json.gz")
                         for f in files)  # fmt: skip
    first = json.loads(gzip.open(files[0], "rt").readline())
    assert {"type", "messageId", "anonymousId", "properties", "context", "timestamp",
            "originalTimestamp", "sentAt", "receivedAt"} <= set(first)  # fmt: skip
    found = landing.discover(files[0].parents[2])
    assert {f.format for f in found if f.kind == "events"} == {landing.SEGMENT}


def test_both_formats_load_the_same_raw_events(built):
    native, seg = built.reports["native"], built.reports["segment"]
    assert native.reconciles and seg.reconciles
    assert (seg.lines_in, seg.loaded, seg.duplicates, seg.rejected) == (
        native.lines_in, native.loaded, native.duplicates, native.rejected)  # fmt: skip
    assert seg.rejected > 0 and seg.duplicates > 0, "the dirty data proves nothing"
    # an unknown event type of the native files is an unknown call type here
    expected = dict(native.rejected_by_reason)
    expected[segment.UNMAPPED] = expected.pop("unknown_event_type")
    assert seg.rejected_by_reason == expected
    assert built.summaries["segment"].malformed_lines == seg.rejected_by_reason
    con = _both(built)
    for a, b in (("native", "segment"), ("segment", "native")):
        extra = con.execute(
            f"select count(*) from (select {LOAD_COLUMNS} from {a}.raw.events "
            f"except all select {LOAD_COLUMNS} from {b}.raw.events)"
        ).fetchall()[0][0]
        assert extra == 0, f"{extra} events of {a} are not in {b}"


def _marts(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    """The marts' tables and views (plays, sessions and pauses are views)."""
    return [t for (t,) in con.execute(
        "select table_name from duckdb_tables() where database_name = $1 and schema_name = 'marts' "
        "union select view_name from duckdb_views() where database_name = $1 "
        "and schema_name = 'marts' order by 1", [catalog]).fetchall()]  # fmt: skip


def _rounded(con: duckdb.DuckDBPyConnection, mart: str) -> str:
    """The mart's columns, doubles rounded to 1e-6: a sum of doubles depends on its order."""
    columns = con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = 'native' "
        "and schema_name = 'marts' and table_name = ? order by column_index",
        [mart],
    ).fetchall()
    return ", ".join(
        f'round("{name}", 6)' if kind in ("DOUBLE", "FLOAT") or kind.startswith("DECIMAL")
        else f'"{name}"'
        for name, kind in columns
    )  # fmt: skip


def test_every_mart_is_equal_from_both_formats(built):
    con = _both(built)
    marts = _marts(con, "native")
    assert _marts(con, "segment") == marts
    assert set(marts) >= {p.stem for p in MARTS_DIR.rglob("*.sql")}
    different = {}
    for mart in marts:
        rows = con.execute(f"select count(*) from native.marts.{mart}").fetchall()[0][0]
        assert rows > 0, f"marts.{mart} is empty: the comparison would prove nothing"
        columns = _rounded(con, mart)
        for a, b in (("native", "segment"), ("segment", "native")):
            n = con.execute(
                f"select count(*) from (select {columns} from {a}.marts.{mart} "
                f"except all select {columns} from {b}.marts.{mart})"
            ).fetchall()[0][0]
            if n:
                different[f"{mart} ({a} - {b})"] = n
    assert not different, different


# ------------------------------------------------------------------ one message, both ways

RECEIVED = datetime(2026, 8, 1, 10, 0, 0, 250000, tzinfo=UTC)
SENT = "2026-08-01T10:03:00.100+00:00"  # the device's clock is three minutes ahead
CONTEXT = {"device": {"type": "android"}, "app": {"version": "5.12.1"},
           "location": {"country": "FR"}}  # fmt: skip


def _call(kind: str, message_id: str, stamp: str, **fields) -> dict:
    return {
        "type": kind,
        "messageId": message_id,
        "userId": "u_000042",
        "anonymousId": "d_0000042",
        "context": CONTEXT,
        "timestamp": stamp,
        **fields,
    }


MESSAGES = [
    _call("track", str(uuid.uuid4()), "2026-08-01T10:02:30.000+00:00",
          event="Video Playback Started",
          properties={"session_id": "pb-1", "content_asset_id": "t_00007", "position": 0,
                      "total_length": 5400, "quality": "hd"}),
    _call("track", "ajs-next-1690000000000-abc", "2026-08-01T12:02:40.500+02:00",
          event="Video Playback Seek Completed",
          properties={"session_id": "pb-1", "content_asset_id": "t_00007", "position": 600,
                      "seek_from_position": 60, "total_length": 5400}),
    _call("page", str(uuid.uuid4()), "2026-08-01T10:02:10.000Z", name="Séries",
          properties={"content_asset_id": "t_00007"}),
    _call("track", str(uuid.uuid4()), "2026-08-01T10:02:50.000Z", event="Title Rated",
          properties={"content_asset_id": "t_00007", "rating": 4}),
]  # fmt: skip


def _as_exported(message: dict) -> dict:
    """What Segment's storage destination writes for a call its API received at RECEIVED."""
    client = datetime.fromisoformat(message["timestamp"])
    corrected = client + (RECEIVED - datetime.fromisoformat(SENT))
    return {**message, "originalTimestamp": message["timestamp"],
            "timestamp": corrected.isoformat(), "sentAt": SENT,
            "receivedAt": RECEIVED.isoformat(), "rudderId": str(uuid.uuid4())}  # fmt: skip


def _write(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))


def test_a_call_gives_the_same_event_through_the_collector_and_an_export_file(tmp_path):
    # the collector's way: its mapping, its lines (segment_api), landed as a native file
    outcomes = segment.map_messages(MESSAGES, RECEIVED, SENT)
    collector_lines, _ = segment_api._lines(outcomes)
    assert len(collector_lines.texts) == len(MESSAGES)
    day = RECEIVED.date().isoformat()
    _write(tmp_path / "a" / "events" / f"date={day}" / "part-0.ndjson.gz",
           [t.encode() for t in collector_lines.texts])  # fmt: skip
    # the export's way: the same calls as Segment stores them
    exported = [json.dumps(_as_exported(m), ensure_ascii=False) for m in MESSAGES]
    file_lines, codes, _ = segment_files.map_lines(exported, segment.load_mapping())
    assert codes == [None] * len(MESSAGES)
    assert file_lines == collector_lines.texts
    _write(tmp_path / "b" / "segment" / f"date={day}" / "export.json.gz",
           [t.encode() for t in exported])  # fmt: skip
    rows = {}
    for side in ("a", "b"):
        report = load.load_landing(tmp_path / side / "w.duckdb", tmp_path / side)
        assert report.loaded == len(MESSAGES) and report.reconciles
        con = duckdb.connect(str(tmp_path / side / "w.duckdb"), read_only=True)
        rows[side] = con.execute(
            f"select {LOAD_COLUMNS} from raw.events order by occurred_at").fetchall()  # fmt: skip
        con.close()
    assert rows["a"] == rows["b"]
    # the client's time moved onto the server's clock: timestamp + (receivedAt - sentAt)
    skew = RECEIVED - datetime.fromisoformat(SENT)
    assert sorted(r[3] for r in rows["a"]) == sorted(
        (datetime.fromisoformat(m["timestamp"]) + skew).astimezone(UTC).replace(tzinfo=None)
        for m in MESSAGES
    )
    ids = {str(r[0]) for r in rows["a"]}
    assert str(uuid.uuid5(segment.MESSAGE_ID_NAMESPACE, MESSAGES[1]["messageId"])) in ids
    assert MESSAGES[0]["messageId"] in ids


# ------------------------------------------------------------------ hostile lines


def _line(call: dict | None = None, **changes) -> bytes:
    base = _as_exported(
        _call(
            "track",
            str(uuid.uuid4()),
            "2026-08-01T10:02:50.000Z",
            event="Title Liked",
            properties={"content_asset_id": "t_00001"},
        )
    )
    base.update(call or {})
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return json.dumps(base).encode()


DUPLICATE = _line(messageId="2d3b8c0e-6f6a-4d47-9f7e-1d1f3f0a9c11")
HOSTILE = [
    (b'{"type": "track", "event": "Title Li', "rejected", "invalid_json"),
    (b"[1, 2, 3]", "rejected", "not_an_object"),
    (b"", "rejected", "empty_line"),
    (b"\xff\xfe not utf-8", "rejected", "invalid_encoding"),
    (b'{"type": "track", "position": NaN}', "rejected", "invalid_json"),
    (_line(type="screenview"), "rejected", "unmapped_event"),
    (_line(type=...), "rejected", "unmapped_event"),
    (_line(event="Totally Custom Event"), "rejected", "unmapped_event"),
    (_line(messageId=...), "rejected", "missing_field"),
    (_line(messageId=12345), "rejected", "wrong_type"),
    (_line(anonymousId=..., context={"device": {"type": "web"}}), "rejected", "missing_field"),
    (_line(originalTimestamp="yesterday"), "rejected", "wrong_type"),
    (_line(originalTimestamp=1722506570), "rejected", "wrong_type"),
    (_line(sentAt="2026-08-01 10:00"), "rejected", "wrong_type"),
    (_line(receivedAt=...), "rejected", "missing_field"),
    (_line(receivedAt="2026-08-01T10:00:00"), "rejected", "wrong_type"),
    (_line(originalTimestamp="1999-01-01T00:00:00Z", sentAt=..., timestamp=...), "rejected",
     "timestamp_out_of_range"),
    (_line(event="Title Rated", properties={"content_asset_id": "t_00001", "rating": "5"}),
     "rejected", "wrong_type"),
    (_line(type="identify", event=..., traits={"email": "a@example.com"}), "skipped",
     segment.NO_CONTRACT_EVENT),
    (_line(event="Video Ad Started"), "skipped", segment.NO_CONTRACT_EVENT),
    (_line(type="alias", event=...), "skipped", segment.NO_CONTRACT_EVENT),
    (_line(), "loaded", None),
    (DUPLICATE, "loaded", None),
]  # fmt: skip


def test_every_hostile_line_of_an_export_file_is_counted_with_its_reason(tmp_path):
    folder = tmp_path / "landing" / "segment" / "date=2026-08-01"
    _write(folder / "a.json.gz", [line for line, _, _ in HOSTILE])
    # the same messageId in a second file (plain JSON lines) is a duplicate
    (folder / "b.jsonl").write_bytes(DUPLICATE + b"\n")
    report = load.load_landing(tmp_path / "w.duckdb", tmp_path / "landing")
    rejected = [code for _, status, code in HOSTILE if status == "rejected"]
    skipped = [code for _, status, code in HOSTILE if status == "skipped"]
    assert report.lines_in == len(HOSTILE) + 1
    assert (report.loaded, report.duplicates) == (2, 1)
    assert report.rejected == len(rejected) and report.skipped == len(skipped)
    assert report.rejected_by_reason == {c: rejected.count(c) for c in set(rejected)}
    assert report.skipped_by_reason == {segment.NO_CONTRACT_EVENT: len(skipped)}
    assert report.reconciles and load.reconciliation(tmp_path / "w.duckdb")["reconciles"]
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        manifest = con.execute(
            "select file_path, lines_in, loaded, duplicates, rejected, skipped "
            "from raw.load_manifest order by file_path").fetchall()  # fmt: skip
        reasons = con.execute(
            "select reason_code, reason, raw_line from raw.rejected_events").fetchall()  # fmt: skip
    finally:
        con.close()
    assert [m[1:] for m in manifest] == [
        (len(HOSTILE), 2, 0, len(rejected), len(skipped)), (1, 0, 1, 0, 0)]  # fmt: skip
    texts = {r[1] for r in reasons}
    assert "missing_field: event_id (messageId)" in texts
    assert "missing_field: received_at (receivedAt)" in texts
    assert "wrong_type: originalTimestamp is not an RFC 3339 timestamp with an offset" in texts
    assert "wrong_type: properties.rating is not an integer" in texts
    assert all(r[1].startswith(r[0] + ": ") for r in reasons)
    # the rejected table keeps the export's line, not the contract event it became
    rating = next(r for r in reasons if r[1].endswith("rating is not an integer"))
    assert json.loads(rating[2])["event"] == "Title Rated"
    # a second load finds every file loaded already
    again = load.load_landing(tmp_path / "w.duckdb", tmp_path / "landing")
    assert again.count("already_loaded") == 2 and again.loaded == 0


def test_the_spark_loader_refuses_export_files_with_the_reason(tmp_path):
    from ottp.ingest import spark_load

    _write(tmp_path / "segment" / "date=2026-08-01" / "a.json.gz", [_line()])
    _write(tmp_path / "events" / "date=2026-08-01" / "part-0.ndjson.gz", [b"{}"])
    report = load.LoadReport("x")
    kept = spark_load.refuse_segment_files(landing.discover(tmp_path), report)
    assert [f.format for f in kept] == [landing.NATIVE]
    assert [(f.status, f.error) for f in report.files] == [
        ("unreadable", spark_load.SEGMENT_REFUSED)
    ]
