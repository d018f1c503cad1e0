"""The mapping compiled into SQL (ottp.ingest.segment_sql) gives what the Python mapping gives.

Every line goes through both: ``segment_files.map_lines`` (the collector's
mapping, ``map_stored_message``) and the compiled select, and each line's
event (as parsed JSON), reason code and reason text must be the same; a line
the select leaves to Python must be one it names as such.
"""

from __future__ import annotations

import gzip
import json

import duckdb
import pytest

from ottp.contract import segment
from ottp.ingest import segment_files, segment_sql
from ottp.simulator import simulate
from tests.contract import test_segment as contract_cases
from tests.ingest import test_segment_landing as landing_cases

RECEIVED = "2026-12-07T10:00:00.000Z"


def _stored(message: dict, **extra) -> dict:
    """A collector-style call as an export stores it: with its receivedAt."""
    return {**message, "receivedAt": RECEIVED, **extra}


def _contract_messages() -> list[dict]:
    """The calls of tests/contract/test_segment.py, and variants of their edges."""
    track, player = contract_cases.track, contract_cases.player
    base = track("Title Liked", content_asset_id="t_1")
    page = {**track("x"), "type": "page", "name": "Title", "properties": {"content_asset_id": "t"}}
    page.pop("event")
    one_id = player("Video Playback Started", content_asset_ids=["t_5"])
    del one_id["properties"]["content_asset_id"]
    calls = [
        *(player(n, livestream=False, video_player="html5", bitrate=None) for n in (
            "Video Playback Started", "Video Content Playing", "Video Playback Paused",
            "Video Playback Resumed", "Video Content Completed", "Video Playback Completed",
            "Video Playback Exited", "Video Playback Interrupted")),
        player("Video Playback Seek Completed", position=200, seek_from_position=90),
        player("Video Playback Seek Completed", position=200),
        player("Video Playback Buffer Started"),
        {"type": "identify", "userId": "u_1", "anonymousId": "d_1", "messageId": "m"},
        track("Poster Hovered"), {**base, "type": "telemetry"},
        page, {**page, "type": "screen", "name": "Downloads", "properties": {}},
        {**page, "userId": None}, {**page, "name": None}, {**page, "name": 7},
        {**page, "name": ""}, {k: v for k, v in page.items() if k != "name"},
        track("Title Rated", content_asset_id="t_3", rating=4),
        track("Title Rated", content_asset_id="t_3", rating="4"),
        track("Consent Updated", marketing_opt_in=True),
        track("Survey Answered", survey_id="nps", question_id="score", answer="9"),
        track("Title Shared", content_asset_id="t_3", share_via="sms"),
        track("Title Shared", content_asset_id="t_3"),
        {**base, "context": {}},
        {**base, "sentAt": "2026-12-07T09:30:00Z"},
        {**base, "sentAt": "2026-12-07T09:00:30.500+00:00"},
        {**base, "sentAt": None}, {**base, "timestamp": None},
        {**base, "timestamp": None, "originalTimestamp": "2026-12-07T09:29:00.000Z"},
        {**base, "originalTimestamp": "2026-12-07T09:29:00.000Z", "sentAt": "2026-12-07T09:30Z"},
        *({**base, "timestamp": bad} for bad in ("2026-12-07", "yesterday", 1733565600)),
        {**base, "messageId": "ajs-next-1733565600000-abc"}, {**base, "messageId": None},
        {**base, "messageId": 7}, {**base, "messageId": ""}, {**base, "messageId": "Ünï"},
        {**base, "messageId": base["messageId"].upper()}, {**base, "anonymousId": None},
        {**base, "anonymousId": None, "context": {"device": {"type": "ios", "id": "dev-9"}}},
        {**base, "anonymousId": 42}, {**base, "userId": ""}, {**base, "userId": 5},
        {**base, "context": {"location": {"country": "France"}, "device": {"type": "web"}}},
        {**base, "context": {"location": {"country": "FR\n"}, "os": {"name": "Roku"}}},
        {**base, "context": {"library": {"name": "analytics.js"}, "app": {"version": ""}}},
        {**base, "context": {"device": {"type": 3}, "os": {"name": "tvOS"}}},
        {**base, "context": "web"}, {**base, "properties": [1, 2]}, {**base, "properties": None},
        {**base, "event": ""}, {**base, "event": 5}, {**base, "type": None}, {**base, "type": 3},
        {**base, "type": "x" * 60}, {**base, "event": "Custom \"Quoted\" Event"},
        one_id,
        {**one_id, "properties": {**one_id["properties"], "content_asset_ids": ["t_5", "t_6"]}},
        {**one_id, "properties": {**one_id["properties"], "content_asset_ids": []}},
        {**one_id, "properties": {**one_id["properties"], "content_asset_ids": [None]}},
        {**one_id, "properties": {**one_id["properties"], "asset_id": "", "title_id": "t_8"}},
        player("Video Playback Started", position=1.5, total_length=5400.0, quality="hd",
               full_screen=True, framerate=29.97, sound=None, unknown="dropped"),
        player("Video Playback Started", session_id=[1, "é", None, [2]], position="5"),
    ]  # fmt: skip
    return [_stored(m) for m in calls]


def _landing_lines() -> list[str]:
    """tests/ingest/test_segment_landing.py's hostile lines (and its one-message calls)."""
    lines = [line.decode("utf-8", "replace") for line, _, _ in landing_cases.HOSTILE]
    lines += [json.dumps(landing_cases._as_exported(m)) for m in landing_cases.MESSAGES]
    return lines


# What only Python answers (the select flags these; the loader hands them over).
FLAGGED = [
    '{"type":"track","type":"page","receivedAt":"2026-12-07T10:00:00Z"}',
    json.dumps(_stored(contract_cases.track("Title Liked"), timestamp="2026-12-07t09:00:00z")),
    json.dumps(_stored(contract_cases.track("Title Liked"), timestamp="2026-12-07T24:00:00Z")),
    json.dumps(_stored(contract_cases.track("Title Liked"), sentAt="2026-12-07T09:00:00.1234567Z")),
    json.dumps(_stored(contract_cases.track("Title Liked"), timestamp="0001-01-01T00:00:00Z")),
    json.dumps(_stored(contract_cases.track("Vidéo Vue"))),
    json.dumps(
        _stored(contract_cases.player("Video Playback Started", position=1234567890123456789))
    ),
    json.dumps(_stored(contract_cases.player("Video Playback Started", total_length=1e20))),
    json.dumps(_stored(contract_cases.track("Title Liked"), receivedAt="2026-12-07T10:00:00Z\n")),
    '{"type": "track", "event": "Title Liked", "properties": {"a": 1,}}',
    json.dumps(_stored(contract_cases.player("Video Playback Started", session_id={"a": 1}))),
]


def _both(con: duckdb.DuckDBPyConnection, lines: list[str], mapping) -> tuple[list, list]:
    """(Python's outcomes, the select's rows) of each line, in order."""
    con.execute("create or replace temp table t (seq bigint, line varchar)")
    con.executemany("insert into t values (?, ?)", list(enumerate(lines)))
    rows = con.execute(
        f"select * from ({segment_sql.mapped_select(mapping, 'select * from t')}) order by seq"
    ).fetchall()
    python = list(zip(*segment_files.map_lines(lines, mapping), strict=True))
    return python, rows


def _assert_same(python: list, rows: list, lines: list[str]) -> list[str]:
    """Every line the select answers is answered alike; returns those it left to Python."""
    left = []
    for (seq, line, code, reason, flagged), (py_line, py_code, py_reason) in zip(
        rows, python, strict=True
    ):
        if flagged:
            left.append(lines[seq])
            continue
        assert (code, reason) == (py_code, py_reason), lines[seq]
        got = None if line is None else json.loads(line)
        assert got == (None if py_line is None else json.loads(py_line)), lines[seq]
    return left


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def _objects(lines: list[str]) -> list[str]:
    """The lines the loader hands to the mapping: JSON objects (its line checks passed)."""
    out = []
    for text in lines:
        try:
            if isinstance(json.loads(text), dict) and "NaN" not in text:
                out.append(text)
        except ValueError:
            continue
    return out


def test_every_test_line_maps_alike_in_sql_and_in_python(con):
    lines = _objects(_landing_lines()) + [json.dumps(m) for m in _contract_messages()]
    python, rows = _both(con, lines, segment.load_mapping())
    assert _assert_same(python, rows, lines) == []
    codes = {r[2] for r in rows}
    assert {"missing_field", "wrong_type", "unmapped_event", "no_contract_event",
            "invalid_value", None} <= codes  # fmt: skip
    assert sum(r[1] is not None for r in rows) > 30


def test_lines_without_an_exact_sql_answer_are_left_to_python(con):
    python, rows = _both(con, FLAGGED, segment.load_mapping())
    assert [r[4] for r in rows] == [True] * len(FLAGGED)
    assert all(r[1] is None and r[3] is None for r in rows)
    assert len(python) == len(FLAGGED)


def test_a_platform_mapping_file_is_compiled_too(con, tmp_path):
    raw = json.loads(segment.DEFAULT_MAPPING_PATH.read_text())
    raw["track"]["Thumbs Up"] = {"event_type": "like"}
    raw["track"]["Title Rated"] = {"event_type": "rating", "properties": {"quality": "stars"}}
    raw["track"]["Video Playback Paused"] = {
        "event_type": "pause", "properties": {"quality": "q"},
        "fields_from": {"position_s": ["properties.pos", "properties.position"]}}  # fmt: skip
    raw["track"]["Title Liked"] = None
    raw["platform_default"] = "tv"
    raw["page_names"] = {}
    raw["player_properties"] = ["quality", "odd.key"]
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(raw))
    mapping = segment.load_mapping(path)
    track, player = contract_cases.track, contract_cases.player
    calls = [
        {**track("Thumbs Up", content_asset_id="t_9"), "context": {}},
        track("Title Liked", content_asset_id="t_9"),
        track("Title Rated", content_asset_id="t_9", stars=5, rating=4),
        player("Video Playback Paused", pos=12, quality="hd", q="sd"),
        player("Video Playback Paused", quality="hd", **{"odd.key": 1}),
        player("Video Playback Paused", pos=None, q=None),
        {**track("x"), "type": "screen", "name": "Home"},
    ]
    lines = [json.dumps(_stored(m)) for m in calls]
    python, rows = _both(con, lines, mapping)
    assert _assert_same(python, rows, lines) == []
    assert json.loads(rows[3][1])["properties"] == {"quality": "sd"}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("segment_sql")
    simulate(root, fmt="segment", users=15, titles=30, days=2, seed=7, dirty_rate=0.05)
    return [
        line.rstrip("\n")
        for path in sorted((root / "segment").rglob("*.json.gz"))
        for line in gzip.open(path, "rt", encoding="utf-8")
    ]


def test_the_simulators_segment_lines_map_alike(con, simulated):
    lines = _objects(simulated)
    python, rows = _both(con, lines, segment.load_mapping())
    assert len(lines) > 500
    assert _assert_same(python, rows, lines) == []
    assert {r[2] for r in rows} > {None}, "the dirty lines prove nothing"


def test_the_loader_maps_flagged_lines_in_python(tmp_path):
    path = tmp_path / "a.json.gz"
    lines = [*_landing_lines(), *FLAGGED, json.dumps(_stored(contract_cases.track("Title Liked")))]
    with gzip.open(path, "wb") as f:
        f.write(b"".join(line.encode() + b"\n" for line in lines))
    con = duckdb.connect()
    try:
        segment_files.stage_lines(con, [str(path)])
        mapping = segment.load_mapping()
        assert segment_files._map_staged(con, mapping) == len(FLAGGED)
        staged = con.execute(
            "select seq, s.line, m.line, m.reason_code, m.reason from _seg_lines s "
            "join _seg_mapped m using (seq) order by seq"
        ).fetchall()
    finally:
        con.close()
    python = segment_files.map_lines([s[1] for s in staged], mapping)
    got = [(None if s[2] is None else json.loads(s[2]), s[3], s[4]) for s in staged]
    want = [(None if e is None else json.loads(e), c, r) for e, c, r in zip(*python, strict=True)]
    assert got == want
    assert len(staged) == len(lines) - 5  # the reader and the line checks took 5


def test_mapping_paths_are_quoted_for_duckdb():
    assert segment_sql._json_path(("properties", 'a"b.c')) == '$."properties"."a\\"b.c"'


def test_a_call_type_that_is_a_list_or_an_object_is_rejected_with_a_reason(con):
    # the Python mapping raises TypeError on these (an unhashable call type); the select answers
    lines = [
        json.dumps(_stored(contract_cases.track("Title Liked"), type=kind)) for kind in ([], {})
    ]
    con.execute("create or replace temp table t (seq bigint, line varchar)")
    con.executemany("insert into t values (?, ?)", list(enumerate(lines)))
    rows = con.execute(
        f"select reason, python from ({segment_sql.mapped_select(segment.load_mapping(), 'select * from t')})"  # noqa: E501
    ).fetchall()
    types = ", ".join(segment.CALL_TYPES)
    assert rows == [(f"unmapped_event: call type missing is not one of {types}", False)] * 2


def test_a_call_type_that_is_not_text_is_rejected_alike(con):
    from tests.contract.test_segment import track

    shapes = (["track"], {"track": 1}, 7, True, None, "Track")
    lines = [json.dumps(_stored({**track("Title Liked"), "type": t})) for t in shapes]
    python, rows = _both(con, lines, segment.load_mapping())
    assert _assert_same(python, rows, lines) == []
    assert {r[2] for r in rows} == {"unmapped_event"}
