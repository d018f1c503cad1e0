"""The raw loader: exactly once, every line accounted for, one transaction per load."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from ottp import config
from ottp.ingest import load
from tests.conftest import DAY, make_event, make_title, write_landing

PLAY = {
    "event_type": "heartbeat",
    "playback_id": "p_1",
    "title_id": "t_00001",
    "position_s": 60.0,
    "duration_s": 5400.0,
}


def _load(tmp_path: Path, day: date | None = None) -> load.LoadReport:
    return load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing", day)


def _query(tmp_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _without(event: dict, field: str) -> dict:
    return {k: v for k, v in event.items() if k != field}


BAD_LINES = [
    pytest.param(b'{"event_id": "abc", "event_type": "pa', "invalid_json", id="truncated"),
    pytest.param(b"\xff\xfe\x00 not utf-8", "invalid_encoding", id="invalid-utf8"),
    pytest.param(b"[1, 2, 3]", "not_an_object", id="array"),
    pytest.param(b'"just a string"', "not_an_object", id="string"),
    pytest.param(b"", "empty_line", id="empty"),
    pytest.param(
        b'{"a": "' + b"x" * (load.MAX_LINE_BYTES + 10) + b'"}', "line_too_long", id="long"
    ),
    pytest.param(_without(make_event(), "event_id"), "missing_field", id="no-event-id"),
    pytest.param(_without(make_event(), "device_id"), "missing_field", id="no-device"),
    pytest.param(make_event(user_id=None, **PLAY), "missing_field", id="play-no-user"),
    pytest.param(make_event(**{**PLAY, "position_s": None}), "missing_field", id="no-position"),
    pytest.param(
        make_event(event_type="seek", **_without(PLAY, "event_type")),
        "missing_field",
        id="seek-no-from",
    ),
    pytest.param(
        make_event(event_type="rating", title_id="t_1", properties={}),
        "missing_field",
        id="rating-no-value",
    ),
    pytest.param(make_event(occurred_at=12345), "wrong_type", id="time-as-number"),
    pytest.param(make_event(event_id="not-a-uuid"), "wrong_type", id="bad-uuid"),
    pytest.param(make_event(**{**PLAY, "position_s": "abc"}), "wrong_type", id="position-string"),
    pytest.param(make_event(**{**PLAY, "duration_s": True}), "wrong_type", id="duration-bool"),
    pytest.param(make_event(properties=[1, 2]), "wrong_type", id="properties-list"),
    pytest.param(make_event(event_type="telemetry_blob"), "unknown_event_type", id="unknown-type"),
    pytest.param(make_event(schema_version="2.0"), "unsupported_schema_version", id="v2"),
    pytest.param(make_event(platform="fridge"), "invalid_value", id="platform"),
    pytest.param(make_event(**{**PLAY, "position_s": -5}), "invalid_value", id="negative"),
    pytest.param(
        make_event(event_type="rating", title_id="t_1", properties={"rating": 9}),
        "invalid_value",
        id="rating-9",
    ),
    pytest.param(
        make_event(occurred_at="1970-01-01T00:00:00Z"), "timestamp_out_of_range", id="epoch"
    ),
    pytest.param(
        make_event(received_at="2099-01-01T00:00:00Z", occurred_at="2099-01-01T00:00:00Z"),
        "timestamp_out_of_range",
        id="future",
    ),
    pytest.param(
        make_event(occurred_at="2026-08-03T10:00:00Z"),
        "timestamp_out_of_range",
        id="occurred-after-received",
    ),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_each_bad_line_is_rejected_with_its_reason(tmp_path, line, reason):
    good = make_event()
    write_landing(tmp_path / "landing", [good, line])
    report = _load(tmp_path)

    assert report.lines_in == 2
    assert report.loaded == 1
    assert report.rejected == 1
    assert report.rejected_by_reason == {reason: 1}
    assert report.reconciles
    rows = _query(tmp_path, "select reason_code, reason, raw_line from raw.rejected_events")
    assert len(rows) == 1
    assert rows[0][0] == reason
    assert rows[0][1].startswith(reason + ": ")
    events = _query(tmp_path, "select event_id::varchar from raw.events")
    assert events == [(good["event_id"],)]


def test_valid_events_of_every_family_load_with_their_fields(tmp_path):
    events = [
        make_event(),
        make_event(**PLAY),
        make_event(event_type="seek", **{**_without(PLAY, "event_type"), "from_position_s": 300}),
        make_event(event_type="rating", title_id="t_00001", properties={"rating": 4}),
        make_event(event_type="consent_update", properties={"marketing_opt_in": False}),
        make_event(event_type="cancel", properties={"reason": "too_expensive"}),
        make_event(
            event_type="survey_response",
            properties={"survey_id": "nps", "question_id": "score", "answer": "9"},
        ),
        make_event(user_id=None, event_type="search", properties={"query": "space"}),
        make_event(
            properties={"page": "home", "extra": {"deep": [1, {"x": None}]}},
            unknown_top_level_field="kept out",
        ),
    ]
    write_landing(tmp_path / "landing", events)
    report = _load(tmp_path)
    assert (report.loaded, report.rejected, report.duplicates) == (len(events), 0, 0)
    seek = _query(
        tmp_path,
        "select position_s, from_position_s, duration_s, landing_date from raw.events "
        "where event_type = 'seek'",
    )
    assert seek == [(60.0, 300.0, 5400.0, DAY)]
    rating = _query(
        tmp_path, "select properties->>'rating' from raw.events where event_type = 'rating'"
    )
    assert rating == [("4",)]


def test_rerun_and_redelivery_are_no_ops(tmp_path):
    lines = [make_event() for _ in range(20)]
    path = write_landing(tmp_path / "landing", lines)
    first = _load(tmp_path)
    assert first.loaded == 20

    again = _load(tmp_path)
    assert again.loaded == 0 and again.count("already_loaded") == 1

    # The same bytes delivered again under another name, another day.
    copy = tmp_path / "landing/events/date=2026-08-02/part-00007.ndjson.gz"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(path.read_bytes())
    redelivered = _load(tmp_path)
    assert redelivered.count("duplicate_file") == 1
    assert (redelivered.loaded, redelivered.duplicates) == (0, 20)
    assert _query(tmp_path, "select count(*) from raw.events") == [(20,)]
    statuses = _query(
        tmp_path, "select status, count(*) from raw.load_manifest group by 1 order by 1"
    )
    assert statuses == [("duplicate_file", 1), ("loaded", 1)]
    assert load.reconciliation(tmp_path / "warehouse.duckdb")["reconciles"]


def test_duplicate_events_across_files_and_days_are_loaded_once(tmp_path):
    a, b, c = make_event(), make_event(), make_event()
    retry_of_b = dict(b, received_at="2026-08-02T00:05:00.000Z")
    write_landing(tmp_path / "landing", [a, b, a], name="part-00000.ndjson.gz")
    write_landing(tmp_path / "landing", [b, c], name="part-00001.ndjson.gz")
    write_landing(tmp_path / "landing", [retry_of_b, c], day=date(2026, 8, 2))

    day1 = _load(tmp_path, DAY)
    assert (day1.lines_in, day1.loaded, day1.duplicates) == (5, 3, 2)
    day2 = _load(tmp_path, date(2026, 8, 2))
    assert (day2.lines_in, day2.loaded, day2.duplicates) == (2, 0, 2)

    rows = _query(tmp_path, "select event_id::varchar, received_at from raw.events order by 1")
    assert sorted(r[0] for r in rows) == sorted([a["event_id"], b["event_id"], c["event_id"]])
    # The first received copy wins.
    received_b = [r[1] for r in rows if r[0] == b["event_id"]]
    assert received_b[0].isoformat() == "2026-08-01T10:00:01"
    totals = load.reconciliation(tmp_path / "warehouse.duckdb")
    assert totals["lines_in"] == 7
    assert totals["events_in_table"] == 3
    assert totals["reconciles"]


def test_per_file_counts_reconcile(tmp_path):
    f1 = write_landing(
        tmp_path / "landing", [make_event(), b"{bad", make_event()], name="part-00000.ndjson.gz"
    )
    dup = make_event()
    f2 = write_landing(tmp_path / "landing", [dup, dup, b"[]"], name="part-00001.ndjson.gz")
    report = _load(tmp_path)
    by_path = {r.path: r for r in report.files}
    assert (by_path[str(f1)].lines_in, by_path[str(f1)].loaded, by_path[str(f1)].rejected) == (
        3,
        2,
        1,
    )
    assert (by_path[str(f2)].loaded, by_path[str(f2)].duplicates, by_path[str(f2)].rejected) == (
        1,
        1,
        1,
    )
    manifest = _query(
        tmp_path,
        "select lines_in, loaded, duplicates, rejected, size_bytes, length(sha256) "
        "from raw.load_manifest order by file_path",
    )
    assert manifest == [
        (3, 2, 0, 1, f1.stat().st_size, 64),
        (3, 1, 1, 1, f2.stat().st_size, 64),
    ]


def test_a_crash_mid_load_leaves_the_previous_state_and_the_next_run_completes(
    tmp_path, monkeypatch
):
    write_landing(tmp_path / "landing", [make_event() for _ in range(10)])
    _load(tmp_path)
    write_landing(
        tmp_path / "landing", [make_event() for _ in range(7)] + [b"{oops"], day=date(2026, 8, 2)
    )

    real = load._insert_events

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("killed after inserting events, before the manifest")

    monkeypatch.setattr(load, "_insert_events", crash)
    with pytest.raises(RuntimeError):
        _load(tmp_path)
    # Events were inserted before the crash, but the transaction rolled back.
    assert _query(tmp_path, "select count(*) from raw.events") == [(10,)]
    assert _query(tmp_path, "select count(*) from raw.rejected_events") == [(0,)]
    assert _query(tmp_path, "select count(*) from raw.load_manifest") == [(1,)]

    monkeypatch.setattr(load, "_insert_events", real)
    report = _load(tmp_path)
    assert (report.loaded, report.rejected, report.count("already_loaded")) == (7, 1, 1)
    assert _query(tmp_path, "select count(*) from raw.events") == [(17,)]
    assert load.reconciliation(tmp_path / "warehouse.duckdb")["reconciles"]


def test_a_corrupt_gzip_file_is_reported_and_the_rest_of_the_day_loads(tmp_path):
    good = write_landing(tmp_path / "landing", [make_event() for _ in range(5)])
    corrupt = good.parent / "part-00001.ndjson.gz"
    whole = gzip.compress(b"\n".join(json.dumps(make_event()).encode() for _ in range(200)) + b"\n")
    corrupt.write_bytes(whole[: len(whole) // 2])

    report = _load(tmp_path)
    statuses = {Path(r.path).name: r.status for r in report.files}
    assert statuses == {"part-00000.ndjson.gz": "loaded", "part-00001.ndjson.gz": "unreadable"}
    unreadable = [r for r in report.files if r.status == "unreadable"][0]
    assert unreadable.error
    assert _query(tmp_path, "select count(*) from raw.events") == [(5,)]
    assert _query(tmp_path, "select count(*) from raw.load_manifest") == [(1,)]

    # The content system re-delivers the file intact: it is picked up.
    corrupt.write_bytes(whole)
    fixed = _load(tmp_path)
    assert fixed.loaded == 200
    assert _query(tmp_path, "select count(*) from raw.events") == [(205,)]


def test_catalog_snapshots_load_and_bad_titles_are_rejected(tmp_path):
    land = tmp_path / "landing"
    write_landing(
        land,
        [
            make_title(),
            make_title(title_id="t_00002", kind="episode", series_id="s_1", season=1, episode=1),
            make_title(title_id="t_00003", kind="episode"),  # no series
            make_title(title_id="t_00004", duration_s="long"),
            b"{broken",
        ],
        kind="catalog",
        name="titles.ndjson.gz",
    )
    report = _load(tmp_path)
    assert (report.lines_in, report.loaded, report.rejected) == (5, 2, 3)
    reasons = _query(
        tmp_path, "select reason_code, count(*) from raw.rejected_titles group by 1 order by 1"
    )
    assert reasons == [("invalid_json", 1), ("missing_field", 1), ("wrong_type", 1)]
    kw = _query(tmp_path, "select keywords from raw.titles where title_id = 't_00001'")
    assert kw == [(["family", "city"],)]


def test_a_title_whose_category_is_not_in_the_seed_is_rejected(tmp_path, monkeypatch):
    """The categories come from seeds/categories.csv, read at load time (the models join it)."""
    land = tmp_path / "landing"
    write_landing(
        land,
        [make_title(), make_title(title_id="t_00002", category="cooking")],
        kind="catalog",
        name="titles.ndjson.gz",
    )
    report = _load(tmp_path)
    assert (report.lines_in, report.loaded, report.rejected) == (2, 1, 1)
    rejected = _query(tmp_path, "select reason_code, reason, raw_line from raw.rejected_titles")
    assert [(code, reason) for code, reason, _ in rejected] == [
        ("invalid_value", 'invalid_value: category "cooking" is not one of seeds/categories.csv')
    ]
    assert json.loads(rejected[0][2])["title_id"] == "t_00002"
    assert _query(tmp_path, "select title_id from raw.titles") == [("t_00001",)]

    # the seed is the list: a seed that names the category lets the next snapshot in
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "categories.csv").write_text(
        (config.SEEDS_DIR / "categories.csv").read_text() + "cooking,Cooking,Food shows\n"
    )
    monkeypatch.setattr(config, "SEEDS_DIR", seeds)
    snapshot = [
        make_title(),
        make_title(title_id="t_00002", category="cooking"),
        make_title(title_id="t_00003", category="comedy"),
    ]
    write_landing(land, snapshot, day=date(2026, 8, 2), kind="catalog", name="titles.ndjson.gz")
    assert _load(tmp_path).loaded == 3
    assert _query(tmp_path, "select count(*) from raw.titles where category = 'cooking'") == [(1,)]
