"""Property-based tests of the raw loader on hostile landing lines.

Each example writes one landing file of generated lines, each line tagged with
what must become of it (loaded, duplicate, or rejected with a given reason, or
with any reason for arbitrary bytes), loads it into a fresh warehouse and
checks every line is accounted for, per reason and per line.
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ottp.contract.rules import BY_ID
from ottp.ingest import landing, load, validate
from tests.conftest import DAY, make_event, make_title, write_landing

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CONTRACT_FIELDS = set(validate._EVENT_STRINGS + validate._EVENT_JSON)
SQL_LOOKING = [
    "'; drop table raw.events; --",
    '"; delete from raw.load_manifest; --',
    "' or '1'='1",
    "$1",
    "?",
    "%s",
    "{0}",
    "'' || chr(0) || ''",
    "\\u0000",
    "NaN",
    "Infinity",
    '"NaN"',
    "\\",
    "Robert'); DROP TABLE students;--",
    "😀 ünïcödé ✓",
    "line\nbreak\ttab\rreturn",
    "\x1f unit separator",
]
# Text that json.dumps can encode and UTF-8 can hold: no lone surrogates, no NUL.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
) | st.sampled_from(SQL_LOOKING)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=25,
)
NOW = datetime.now(UTC)
VALID_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=(NOW - timedelta(days=3)).replace(tzinfo=None)
)
OFFSETS = st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "+14:00", "-12:00"])
PLAYER = set(load.EVENT_TYPES["player"])
WITH_TITLE = {"title_click", *load.EVENT_TYPES["interest"]}
WITH_USER = set(load.EVENT_TYPES["interest"] + load.EVENT_TYPES["account"])
WITH_USER |= set(load.EVENT_TYPES["survey"])
MAX_POSITION_S = BY_ID["position_s.maximum"].value
MAX_DURATION_S = BY_ID["duration_s.maximum"].value
COUNTRY = st.from_regex(r"\A[A-Z]{2}\Z")


def _stamp(moment: datetime, offset: str) -> str:
    """An ISO timestamp of the UTC instant ``moment`` written with ``offset``."""
    if offset == "Z":
        return moment.isoformat() + "Z"
    sign = 1 if offset[0] == "+" else -1
    delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * sign
    return (moment + delta).isoformat() + offset


@st.composite
def valid_events(draw) -> dict:
    event_type = draw(st.sampled_from(load.ALL_EVENT_TYPES))
    occurred = draw(VALID_TIMES)
    received = occurred + timedelta(seconds=draw(st.integers(0, 3 * 86400)))
    event = make_event(
        event_type=event_type,
        schema_version=draw(st.sampled_from(["1.0", "1.1", "1.42"])),
        occurred_at=_stamp(occurred, draw(OFFSETS)),
        received_at=_stamp(received, draw(OFFSETS)),
        user_id=draw(TEXT),
        device_id=draw(TEXT),
        platform=draw(st.sampled_from(load.PLATFORMS)),
        app_version=draw(st.none() | TEXT),
        country=draw(st.none() | COUNTRY),
        properties=draw(st.none() | st.dictionaries(TEXT, JSON_VALUES, max_size=5)),
    )
    if event_type in PLAYER:
        event.update(
            playback_id=draw(TEXT),
            title_id=draw(TEXT),
            position_s=draw(st.integers(0, MAX_POSITION_S) | st.floats(0, MAX_POSITION_S)),
            duration_s=draw(st.integers(1, MAX_DURATION_S) | st.floats(0.001, MAX_DURATION_S)),
        )
        if event_type == "seek":
            event["from_position_s"] = draw(st.floats(0, MAX_POSITION_S))
    if event_type in WITH_TITLE:
        event["title_id"] = draw(TEXT)
    properties = event["properties"] or {}
    if event_type == "rating":
        event["properties"] = {**properties, "rating": draw(st.integers(1, 5))}
    if event_type == "consent_update":
        event["properties"] = {**properties, "marketing_opt_in": draw(st.booleans())}
    if event_type == "survey_response":
        event["properties"] = {
            **properties,
            **{k: draw(TEXT) for k in ("survey_id", "question_id", "answer")},
        }
    # Unknown top-level fields are ignored (none may shadow a contract field).
    extra = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=3))
    event.update({k: v for k, v in extra.items() if k.lower() not in CONTRACT_FIELDS})
    return event


def _line(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


NOT_A_STRING = (
    st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text("abc'\"\\ ", max_size=3), st.integers(), max_size=2)
)


@st.composite
def bad_lines(draw) -> tuple[bytes, str]:
    """A line and the one reason it must be rejected for."""
    event = draw(valid_events())
    kind = draw(
        st.sampled_from(
            [
                "missing",
                "not_a_string",
                "bad_uuid",
                "bad_time",
                "too_old",
                "too_new",
                "nan",
                "truncated",
                "unknown_type",
                "schema",
                "platform",
                "not_object",
                "empty",
                "encoding",
                "nul",
                "negative",
                "too_far",
                "country",
                "opt_in",
                "survey_null",
                "rating",
            ]
        )
    )
    if kind == "missing":
        field = draw(
            st.sampled_from(
                [
                    "event_id",
                    "event_type",
                    "schema_version",
                    "occurred_at",
                    "received_at",
                    "device_id",
                    "platform",
                ]
            )
        )
        if draw(st.booleans()):
            del event[field]
        else:
            event[field] = None
        return _line(event), "missing_field"
    if kind == "not_a_string":
        event[draw(st.sampled_from(["event_id", "device_id", "platform", "occurred_at"]))] = draw(
            NOT_A_STRING
        )
        return _line(event), "wrong_type"
    if kind == "bad_uuid":
        event["event_id"] = "x" + draw(TEXT)
        return _line(event), "wrong_type"
    if kind == "bad_time":
        event["occurred_at"] = "x" + draw(TEXT)
        return _line(event), "wrong_type"
    if kind == "too_old":
        moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(1999, 12, 30)))
        event["occurred_at"] = _stamp(moment, "Z")
        return _line(event), "timestamp_out_of_range"
    if kind == "too_new":
        moment = draw(st.datetimes(min_value=datetime(2100, 1, 1), max_value=datetime(9999, 1, 1)))
        event["occurred_at"] = event["received_at"] = _stamp(moment, "Z")
        return _line(event), "timestamp_out_of_range"
    if kind == "nan":
        value = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        if draw(st.booleans()):
            event["properties"] = {**(event["properties"] or {}), "x": [value]}
        else:
            event.update(
                event_type="heartbeat",
                playback_id="p",
                title_id="t",
                position_s=value,
                duration_s=10,
            )
        return json.dumps(event, allow_nan=True).encode(), "invalid_json"
    if kind == "truncated":
        whole = json.dumps(event)
        return whole[: draw(st.integers(1, len(whole) - 1))].encode(), "invalid_json"
    if kind == "unknown_type":
        event["event_type"] = draw(TEXT.filter(lambda t: t not in load.ALL_EVENT_TYPES))
        return _line(event), "unknown_event_type"
    if kind == "schema":
        event["schema_version"] = draw(st.sampled_from(["2.0", "0.9", "1", "1.x", "v1.0", ""]))
        return _line(event), "unsupported_schema_version"
    if kind == "platform":
        event["platform"] = draw(TEXT.filter(lambda t: t not in load.PLATFORMS))
        return _line(event), "invalid_value"
    if kind == "not_object":
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return json.dumps(value).encode(), "not_an_object"
    if kind == "empty":
        return draw(st.sampled_from([b"", b" ", b"   "])), "empty_line"
    if kind == "encoding":
        raw = _line(event)
        cut = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
        return raw[:cut] + bad + raw[cut:], "invalid_encoding"
    if kind == "nul":
        event["device_id"] = draw(TEXT) + "\x00" + draw(TEXT)
        return json.dumps(event).encode(), "invalid_value"
    if kind == "negative":
        event.update(
            event_type="heartbeat",
            playback_id="p",
            title_id="t",
            position_s=-draw(st.floats(0.001, 1e6)),
            duration_s=10,
        )
        return _line(event), "invalid_value"
    if kind == "too_far":
        field = draw(st.sampled_from(["position_s", "duration_s"]))
        event.update(
            event_type="heartbeat", playback_id="p", title_id="t", position_s=0, duration_s=10
        )
        event[field] = draw(st.floats(MAX_POSITION_S + 0.001, 1e308))
        return _line(event), "invalid_value"
    if kind == "country":
        event["country"] = draw(TEXT.filter(lambda t: re.fullmatch("[A-Z]{2}", t) is None))
        return _line(event), "invalid_value"
    if kind == "opt_in":
        # never coerced: "yes", "true", 1 and 0 are not booleans
        value = draw(st.sampled_from(["yes", "true", "false", "1", 1, 0, 1.0]) | TEXT)
        event.update(event_type="consent_update", properties={"marketing_opt_in": value})
        return _line(event), "wrong_type"
    if kind == "survey_null":
        properties = {"survey_id": "nps", "question_id": "score", "answer": "9"}
        field = draw(st.sampled_from(sorted(properties)))
        if draw(st.booleans()):
            properties[field] = None
        else:
            del properties[field]
        event.update(event_type="survey_response", properties=properties)
        return _line(event), "missing_field"
    event.update(
        event_type="rating",
        title_id="t",
        properties={"rating": draw(st.integers(6, 10**6) | st.integers(-(10**6), 0))},
    )
    return _line(event), "invalid_value"


# What each generated line must become: "loaded", "duplicate", a reason code,
# or "any" (arbitrary bytes: rejected, for whichever reason).
TAGGED_LINES = st.one_of(
    valid_events().map(lambda e: (_line(e), "loaded")),
    valid_events().map(lambda e: (_line(e), "loaded")),
    bad_lines(),
    st.binary(max_size=200).map(lambda b: (b.replace(b"\n", b""), "any")),
    st.just((b"dup", "duplicate")),
)


def _load_lines(
    root: Path, lines: list[bytes]
) -> tuple[load.LoadReport, duckdb.DuckDBPyConnection]:
    write_landing(root / "landing", lines)
    report = load.load_landing(root / "warehouse.duckdb", root / "landing")
    return report, duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)


def _resolve(tagged: list[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
    """Turn the duplicate placeholders into copies of an earlier loaded line."""
    out, loaded = [], []
    for line, tag in tagged:
        if tag == "duplicate":
            if not loaded:
                continue
            line = loaded[len(out) % len(loaded)]
        elif tag == "loaded":
            loaded.append(line)
        elif tag == "any" and line.strip().startswith(b"{"):
            # Arbitrary bytes that open an object are nearly always rejected, but
            # the test must not depend on it: keep only what is surely not an event.
            line = b"]" + line
        out.append((line, tag))
    return out


@SETTINGS
@given(st.lists(TAGGED_LINES, min_size=1, max_size=60))
def test_every_generated_line_is_loaded_a_duplicate_or_rejected_with_its_reason(tagged):
    tagged = _resolve(tagged)
    assume(tagged)
    lines = [line for line, _ in tagged]
    tags = Counter(tag for _, tag in tagged)
    with tempfile.TemporaryDirectory() as tmp:
        report, con = _load_lines(Path(tmp), lines)
        try:
            assert report.count("loaded") == 1 and report.reconciles
            assert report.lines_in == len(lines)
            assert report.loaded == tags["loaded"]
            assert report.duplicates == tags["duplicate"]
            assert report.rejected == len(lines) - tags["loaded"] - tags["duplicate"]
            exact = Counter({t: n for t, n in tags.items() if t in load.REJECT_REASONS})
            by_reason = Counter(report.rejected_by_reason)
            assert set(by_reason) <= set(load.REJECT_REASONS)
            assert all(by_reason[r] >= n for r, n in exact.items()), (by_reason, exact)
            assert by_reason.total() == exact.total() + tags["any"]

            # Per line: each validation rejection keeps its line and the expected reason.
            expected = {}
            for line, tag in tagged:
                expected.setdefault(line.decode("utf-8", "replace"), set()).add(tag)
            rows = con.execute(
                "select raw_line, reason_code, reason from raw.rejected_events "
                "where line_number is null"
            ).fetchall()
            for raw_line, code, reason in rows:
                tags_of_line = expected.get(raw_line, {"any"} if tags["any"] else set())
                assert code in tags_of_line or "any" in tags_of_line, (raw_line, code, reason)
                assert reason.startswith(code + ": ") and len(reason) > len(code) + 2

            # Loaded values are stored verbatim, SQL-looking text included.
            want = {}
            for line, tag in tagged:
                if tag == "loaded":
                    event = json.loads(line)
                    want[str(uuid.UUID(event["event_id"]))] = (
                        event["user_id"],
                        event["device_id"],
                        event.get("properties"),
                    )
            got = {
                event_id: (user_id, device_id, None if props is None else json.loads(props))
                for event_id, user_id, device_id, props in con.execute(
                    "select event_id::varchar, user_id, device_id, properties from raw.events"
                ).fetchall()
            }
            assert got == want
        finally:
            con.close()
        # A second run finds the file in the manifest and changes nothing.
        again = load.load_landing(Path(tmp) / "warehouse.duckdb", Path(tmp) / "landing")
        assert again.count("already_loaded") == 1 and again.loaded == again.rejected == 0


def _title(id_: uuid.UUID, **overrides) -> bytes:
    title = make_title(title_id=str(id_))
    title.update(overrides)
    return json.dumps(title, allow_nan=True).encode()


TAGGED_TITLES = st.one_of(
    st.uuids().map(lambda u: (_title(u), "loaded")),
    st.tuples(
        st.uuids(), st.sampled_from(["title_id", "name", "category", "kind"]), NOT_A_STRING
    ).map(lambda a: (_title(a[0], **{a[1]: a[2]}), "wrong_type")),
    st.tuples(
        st.uuids(), st.sampled_from(["title_id", "name", "category", "kind", "duration_s"])
    ).map(lambda a: (_title(a[0], **{a[1]: None}), "missing_field")),
    st.tuples(st.uuids(), st.sampled_from([float("nan"), float("inf")])).map(
        lambda a: (_title(a[0], duration_s=a[1]), "invalid_json")
    ),
    st.binary(max_size=100).map(lambda b: (b"]" + b.replace(b"\n", b""), "any")),
)


@SETTINGS
@given(st.lists(TAGGED_TITLES, min_size=1, max_size=40))
def test_every_generated_catalog_line_is_accounted_for(tagged):
    lines = [line for line, _ in tagged]
    tags = Counter(tag for _, tag in tagged)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_landing(root / "landing", lines, kind="catalog", name="titles.ndjson.gz")
        report = load.load_landing(root / "warehouse.duckdb", root / "landing")
        assert report.reconciles and report.lines_in == len(lines)
        assert report.loaded == tags["loaded"]
        assert report.duplicates == 0
        by_reason = Counter(report.rejected_by_reason)
        for reason in ("wrong_type", "missing_field", "invalid_json"):
            assert by_reason[reason] >= tags[reason]
        assert by_reason.total() == len(lines) - tags["loaded"]


def test_lines_at_and_over_the_size_limit(tmp_path):
    """The reader's own limit: a line over MAX_LINE_BYTES is refused, one under it loads."""
    base = make_event()
    filler = load.MAX_LINE_BYTES - len(json.dumps(base)) - 200
    under = make_event(properties={"pad": "x" * filler})
    over = make_event(properties={"pad": "x" * (load.MAX_LINE_BYTES + 10)})
    report, con = _load_lines(tmp_path, [_line(under), _line(over), _line(make_event())])
    con.close()
    assert (report.lines_in, report.loaded, report.rejected) == (3, 2, 1)
    assert report.rejected_by_reason == {"line_too_long": 1}


def test_sql_looking_file_names_and_values_are_data_not_sql(tmp_path):
    folder = landing.partition_dir(tmp_path / "landing", "events", DAY)
    folder.mkdir(parents=True)
    name = "part-o'brien'); drop table raw.events; --.ndjson.gz"
    events = [make_event(user_id=s, device_id=s, app_version=s) for s in SQL_LOOKING]
    (folder / name).write_bytes(
        gzip.compress(b"\n".join(json.dumps(e).encode() for e in events) + b"\n")
    )
    report = load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing")
    assert (report.loaded, report.rejected) == (len(events), 0)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        stored = {r[0] for r in con.execute("select user_id from raw.events").fetchall()}
        manifest = con.execute("select file_path from raw.load_manifest").fetchall()
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
    finally:
        con.close()
    assert stored == set(SQL_LOOKING)
    assert manifest == [(str((folder / name).resolve()),)]
    assert {"events", "load_manifest", "rejected_events"} <= tables


def test_crlf_line_ends_load_and_a_stray_cr_rejects_only_its_line(tmp_path):
    # DuckDB's CSV reader refuses a whole file for one CR byte; the loader must not.
    a, b, c = make_event(), make_event(), make_event()
    write_landing(
        tmp_path / "landing",
        [_line(a) + b"\r", _line(b) + b"\r", _line(c).replace(b", ", b",\r "), b"\r"],
        name="part-crlf.ndjson.gz",
    )
    write_landing(tmp_path / "landing", [b"\r"], name="part-only-cr.ndjson.gz")
    report, con = _load_lines(tmp_path, [_line(make_event())])
    try:
        by_file = {Path(f.path).name: f for f in report.files}
        crlf = by_file["part-crlf.ndjson.gz"]
        assert (crlf.status, crlf.lines_in, crlf.loaded, crlf.rejected) == ("loaded", 4, 2, 2)
        assert by_file["part-only-cr.ndjson.gz"].rejected == 1
        assert report.reconciles and report.count("unreadable") == 0
        reasons = con.execute(
            "select line_number, reason from raw.rejected_events "
            "where source_file like '%part-crlf%' order by 1 nulls last"
        ).fetchall()
        assert reasons == [
            (3, "invalid_json: a raw control character (CR or 0x1F) inside the line"),
            (None, "empty_line: empty line"),
        ]
        loaded = {r[0] for r in con.execute("select event_id::varchar from raw.events").fetchall()}
        assert {a["event_id"], b["event_id"]} <= loaded and c["event_id"] not in loaded
    finally:
        con.close()


def test_a_wrong_type_behind_an_escaped_key_is_still_a_wrong_type(tmp_path):
    # "user\u005fid" is user_id to a JSON parser; the loader must see it too.
    line = _line(make_event()).replace(b'"user_id": "u_000001"', b'"user\\u005fid": 12345')
    assert b"\\u005f" in line
    report, con = _load_lines(tmp_path, [line, _line(make_event(user_id="12345"))])
    try:
        assert (report.loaded, report.rejected_by_reason) == (1, {"wrong_type": 1})
        assert con.execute("select reason from raw.rejected_events").fetchall() == [
            ("wrong_type: user_id is not a string",)
        ]
        assert con.execute("select user_id from raw.events").fetchall() == [("12345",)]
    finally:
        con.close()
