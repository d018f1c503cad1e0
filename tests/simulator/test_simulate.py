"""Tests of the event simulator: determinism, layout, the event contract, dirty data
reconciliation and the behaviour that downstream models rely on."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest

from ottp.config import CONTRACT_DIR, SEEDS_DIR
from ottp.ingest import landing
from ottp.simulator import (
    HEARTBEAT_INTERVAL_S,
    SimulationSummary,
    simulate,
    suggest_size,
    truth_dir,
)
from ottp.simulator.viewers import COUNTRIES

START = dt.date(2026, 8, 1)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PART_RE = re.compile(r"^part-\d{5}\.ndjson\.gz$")
EVENT_SCHEMA = json.loads((CONTRACT_DIR / "events.schema.json").read_text())
TITLE_SCHEMA = json.loads((CONTRACT_DIR / "titles.schema.json").read_text())
EVENT_TYPES = set(EVENT_SCHEMA["properties"]["event_type"]["enum"])
PLAYER = {"play_start", "heartbeat", "pause", "resume", "seek", "complete", "stop"}
NAVIGATION = {"page_view", "rail_impression", "title_click", "search"}
COMMON_REQUIRED = EVENT_SCHEMA["required"]
SMALL = dict(users=150, titles=80, days=12)


def _seed_codes(name: str, column: str) -> set[str]:
    with open(SEEDS_DIR / name, newline="") as f:
        return {row[column] for row in csv.DictReader(f)}


CATEGORIES = _seed_codes("categories.csv", "category")
REASONS = _seed_codes("cancel_reasons.csv", "reason_code")


# --------------------------------------------------------------------------- helpers


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)  # TS_RE checks the exact shape where it matters


def event_lines(out: Path) -> list[tuple[str, str]]:
    """(folder date, raw line) for every line of every event file."""
    rows = []
    for f in sorted((out / "events").glob("date=*/*.ndjson.gz")):
        day = f.parent.name.removeprefix("date=")
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows.extend((day, line.rstrip("\n")) for line in fh)
    return rows


def rejection_reason(line: str) -> str | None:
    """A strict reading of the contract; None for a valid event."""
    try:
        ev = json.loads(line)
    except json.JSONDecodeError:
        return "invalid_json"
    if not isinstance(ev, dict):
        return "invalid_json"
    if any(k not in ev or ev[k] is None for k in COMMON_REQUIRED):
        return "missing_field"
    for k in (
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "received_at",
        "device_id",
        "platform",
    ):
        if not isinstance(ev[k], str):
            return "wrong_type"
    for k in ("position_s", "duration_s", "from_position_s"):
        if ev.get(k) is not None and (
            not isinstance(ev[k], int | float) or isinstance(ev[k], bool)
        ):
            return "wrong_type"
    if ev["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    return None


def file_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.gz"))}


FIELDS = (
    "event_id",
    "event_type",
    "occurred_at",
    "received_at",
    "user_id",
    "device_id",
    "country",
    "playback_id",
    "title_id",
    "position_s",
    "duration_s",
    "from_position_s",
    "properties",
)


def connect(out: Path, strict: bool = False) -> duckdb.DuckDBPyConnection:
    """Valid distinct events of a run as a DuckDB table ``e`` (the last catalog as ``cat``).

    ``strict`` first drops the lines rejection_reason() rejects (needed for dirty runs)."""
    con = duckdb.connect()
    con.execute(f"""
        create table raw as select line, regexp_extract(filename, 'date=([0-9-]+)', 1) fdate
        from read_csv('{out}/events/*/*.ndjson.gz', columns={{'line': 'VARCHAR'}}, header=false,
                      delim='\\x01', quote='', escape='', filename=true, auto_detect=false)""")
    paths = ", ".join(f"'$.{f}'" for f in FIELDS)
    types = ", ".join(f"'{t}'" for t in sorted(EVENT_TYPES))
    con.execute(f"""create table x as select json_extract(line, [{paths}]) j, fdate from raw
                    {"where json_valid(line)" if strict else ""}""")
    valid = f"""where j[1] ->> '$' is not null and j[6] ->> '$' is not null
        and json_type(j[3]) = 'VARCHAR' and j[2] ->> '$' in ({types})
        and coalesce(json_type(j[10]) in ('UBIGINT', 'BIGINT', 'DOUBLE', 'NULL'), true)"""
    fmt = "'%Y-%m-%dT%H:%M:%S.%gZ'"
    con.execute(f"""
        create table e as select distinct on (event_id) * from (select
          j[1] ->> '$' event_id, j[2] ->> '$' et, try_strptime(j[3] ->> '$', {fmt}) occ,
          try_strptime(j[4] ->> '$', {fmt}) rec, j[5] ->> '$' user_id, j[6] ->> '$' device_id,
          j[7] ->> '$' country, j[8] ->> '$' pb, j[9] ->> '$' title_id,
          try_cast(j[10] ->> '$' as double) pos, try_cast(j[11] ->> '$' as double) dur,
          try_cast(j[12] ->> '$' as double) fpos, j[13] props, fdate::date fdate
        from x {valid if strict else ""}) order by event_id, fdate""")
    snap = sorted((out / "catalog").glob("date=*/titles.ndjson.gz"))[-1]
    con.execute(
        f"create table cat as select * from read_json('{snap}', format='newline_delimited')"
    )
    return con


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def small_dirty(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("small_dirty")
    return out, simulate(out, seed=5, dirty_rate=0.05, **SMALL)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    """A larger clean run for statistics of behaviour."""
    out = tmp_path_factory.mktemp("clean")
    return out, simulate(out, users=500, titles=220, days=36, seed=3)


@pytest.fixture(scope="module")
def clean_db(clean) -> duckdb.DuckDBPyConnection:
    return connect(clean[0])


DIRTY_RATE = 0.12


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("dirty")
    return out, simulate(out, users=400, titles=150, days=20, seed=11, dirty_rate=DIRTY_RATE)


@pytest.fixture(scope="module")
def dirty_db(dirty) -> duckdb.DuckDBPyConnection:
    return connect(dirty[0], strict=True)


@pytest.fixture(scope="module")
def dirty_rows(dirty) -> list[tuple[str, str, str | None, dict | None]]:
    """(folder date, line, rejection reason, parsed event if valid) for each line."""
    rows = []
    for day, line in event_lines(dirty[0]):
        reason = rejection_reason(line)
        rows.append((day, line, reason, json.loads(line) if reason is None else None))
    return rows


# --------------------------------------------------------------------------- determinism & layout


def test_same_seed_gives_byte_identical_files(small_dirty, tmp_path):
    out, summary = small_dirty
    again = simulate(tmp_path / "again", seed=5, dirty_rate=0.05, **SMALL)
    first, second = file_bytes(out), file_bytes(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    a, b = summary.to_dict(), again.to_dict()
    for k in ("seconds", "out_dir", "files", "event_files", "catalog_files"):
        a.pop(k), b.pop(k)
    assert a == b


def test_different_seed_gives_different_data(small_dirty, tmp_path):
    out, _ = small_dirty
    other = tmp_path / "other"
    simulate(other, seed=6, dirty_rate=0.05, **SMALL)

    def ids(path):
        return {
            json.loads(line)["event_id"]
            for _, line in event_lines(path)
            if rejection_reason(line) is None
        }

    assert not ids(out) & ids(other)
    assert file_bytes(out) != file_bytes(other)


def test_rerun_into_same_directory_replaces_previous_output(tmp_path):
    simulate(tmp_path, users=40, titles=30, days=6, seed=1)
    s = simulate(tmp_path, users=40, titles=30, days=3, seed=1)
    days = sorted(p.name for p in (tmp_path / "events").iterdir())
    assert len(days) <= 3 and len(event_lines(tmp_path)) == s.lines_written


def test_layout_and_gzip_headers(small_dirty):
    out, s = small_dirty
    window = {(START + dt.timedelta(days=d)).isoformat() for d in range(SMALL["days"])}
    event_dirs = sorted((out / "events").iterdir())
    assert event_dirs and all(d.name.startswith("date=") for d in event_dirs)
    assert {d.name.removeprefix("date=") for d in event_dirs} <= window
    for f in s.event_files:
        assert PART_RE.match(f.name), f
        raw = f.read_bytes()
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    assert sorted(s.event_files) == sorted((out / "events").glob("date=*/*"))
    assert (out / "catalog" / f"date={START.isoformat()}" / "titles.ndjson.gz") in s.catalog_files
    assert set(s.files) == set(s.event_files) | set(s.catalog_files)
    assert all(p.exists() for p in s.files)
    # the file's date is the UTC day the collector received the event; a collector retry
    # (an exact copy of the line) may land in the next day's file
    first_seen: dict[str, str] = {}
    for day, line in event_lines(out):
        if rejection_reason(line) is None:
            ev = json.loads(line)
            first_seen.setdefault(ev["event_id"], day)
            received = ev["received_at"][:10]
            if first_seen[ev["event_id"]] == day:
                assert received == day
            else:
                assert day == (dt.date.fromisoformat(received) + dt.timedelta(days=1)).isoformat()


# --------------------------------------------------------------------------- contract


def test_clean_lines_follow_the_contract(small_dirty):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(EVENT_SCHEMA)
    seen = Counter()
    for _, line in event_lines(small_dirty[0]):
        if rejection_reason(line) is not None:
            continue
        ev = json.loads(line)
        seen[ev["event_type"]] += 1
        if seen[ev["event_type"]] <= 40:
            errors = list(validator.iter_errors(ev))
            assert not errors, (line, errors[0].message)
        assert UUID_RE.match(ev["event_id"]) and ev["schema_version"] == "1.0"
        assert TS_RE.match(ev["occurred_at"]) and TS_RE.match(ev["received_at"])
        assert ev["user_id"] is None or re.match(r"^u_\d{6,}$", ev["user_id"])
        assert re.match(r"^d_\d{7,}$", ev["device_id"])
        assert re.match(r"^[A-Z]{2}$", ev["country"])
        # occurred_at (client clock) is never more than ~2 h ahead of the collector
        assert ts(ev["occurred_at"]) <= ts(ev["received_at"]) + dt.timedelta(hours=2, minutes=1)
        if ev["event_type"] in PLAYER:
            assert UUID_RE.match(ev["playback_id"]) and ev["title_id"].startswith("t_")
            assert 0 <= ev["position_s"] <= ev["duration_s"]
        if ev["event_type"] == "seek":
            assert ev["from_position_s"] != ev["position_s"]
        if ev["event_type"] == "complete":
            assert ev["position_s"] == ev["duration_s"]
        if ev["user_id"] is None:  # anonymous visitors only browse
            assert ev["event_type"] in NAVIGATION
    assert set(seen) >= EVENT_TYPES - {"reactivate", "deletion_request"}


def test_properties_of_each_event_type(clean_db):
    con = clean_db

    def vals(sql):
        return [r[0] for r in con.execute(sql).fetchall()]

    assert set(vals("select distinct props->>'$.page' from e where et='page_view'")) >= {
        "home",
        "search",
        "title",
    }
    rails = set(vals("select distinct props->>'$.rail' from e where et='rail_impression'"))
    assert {"trending", "continue_watching", "because_you_watched", "search"} <= rails
    assert any(
        r.startswith("category:") and r.removeprefix("category:") in CATEGORIES for r in rails
    )
    assert (
        vals(
            "select min(json_array_length(props->'$.title_ids')) from e where et='rail_impression'"
        )[0]
        >= 5
    )
    assert vals(
        "select count(*) from e where et='title_click' and (props->>'$.rail' is null "
        "or (props->>'$.rank')::int < 1 or title_id is null)"
    ) == [0]
    assert vals("select count(*) from e where et='search' and props->>'$.query' is null") == [0]
    assert set(vals("select distinct (props->>'$.rating')::int from e where et='rating'")) == {
        1,
        2,
        3,
        4,
        5,
    }
    assert set(vals("select distinct props->>'$.plan' from e where et='subscribe'")) == {
        "basic",
        "standard",
        "premium",
    }
    assert set(
        vals(
            "select distinct (props->>'$.marketing_opt_in')::bool from e where et='consent_update'"
        )
    ) == {True, False}
    assert vals("select count(*) from e where et='share' and props->>'$.channel' is null") == [0]
    assert vals(
        "select count(*) from e where et in ('like','dislike','rating','add_to_watchlist',"
        "'share') and (title_id is null or user_id is null)"
    ) == [0]
    nps = vals(
        "select (props->>'$.answer')::int from e where et='survey_response' and "
        "props->>'$.survey_id'='nps' and props->>'$.question_id'='score'"
    )
    assert nps and all(0 <= x <= 10 for x in nps)


def test_clicked_titles_were_shown_in_the_rail(clean_db):
    total, shown, rails = clean_db.execute("""
        with c as (select event_id, device_id, occ, title_id, props->>'$.rail' rail,
                   (props->>'$.rank')::int rk from e
                   where et = 'title_click' and props->>'$.rail' <> 'up_next'),
        i as (select device_id, occ, props->>'$.rail' rail,
                     from_json(props->'$.title_ids', '["VARCHAR"]') ids
              from e where et = 'rail_impression'),
        m as (select c.event_id, c.rail, bool_or(i.ids[c.rk] = c.title_id) hit from c
              left join i on i.device_id = c.device_id and i.rail = c.rail
                   and i.occ between c.occ - interval 10 minute and c.occ
              group by all)
        select count(*), count(*) filter (where hit), count(distinct rail) from m""").fetchone()
    assert total > 1000 and shown == total and rails >= 5


def test_catalog_snapshots(clean):
    out, s = clean
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(TITLE_SCHEMA)
    snaps = sorted(s.catalog_files)
    assert len(snaps) > 2 and snaps[0].parent.name == f"date={START.isoformat()}"
    previous: dict[str, dict] = {}
    for path in snaps:
        day = path.parent.name.removeprefix("date=")
        with gzip.open(path, "rt") as fh:
            recs = {r["title_id"]: r for r in map(json.loads, fh)}
        assert set(previous) <= set(recs)  # full snapshots: titles never disappear
        new = set(recs) - set(previous)
        if previous:
            assert new or any(
                recs[t]["is_available"] != previous[t]["is_available"] for t in previous
            )
            assert all(recs[t]["available_from"] == day for t in new)
        for r in recs.values():
            assert not list(validator.iter_errors(r)), r
            assert r["category"] in CATEGORIES and r["keywords"]
            assert r["available_from"] <= day
            if r["kind"] == "movie":
                assert 80 * 60 <= r["duration_s"] <= 150 * 60 and r["series_id"] is None
            else:
                assert 20 * 60 <= r["duration_s"] <= 60 * 60
                assert r["series_id"].startswith("s_") and r["season"] >= 1 and r["episode"] >= 1
        previous = recs
    assert len(previous) == s.titles
    assert any(not r["is_available"] for r in previous.values())
    # episodes of a series are released in order
    by_series = defaultdict(list)
    for r in previous.values():
        if r["kind"] == "episode":
            by_series[r["series_id"]].append((r["season"], r["episode"], r["available_from"]))
    for eps in by_series.values():
        dates = [d for _, _, d in sorted(eps)]
        assert dates == sorted(dates)


# --------------------------------------------------------------------------- dirty data


def test_reconciliation_of_lines(dirty, dirty_rows):
    _, s = dirty
    assert len(dirty_rows) == s.lines_written
    reasons = Counter()
    clean_lines: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for day, line, r, ev in dirty_rows:
        if r is None:
            clean_lines[ev["event_id"]].append((day, line))
        else:
            reasons[r] += 1
    assert dict(reasons) == {k: v for k, v in s.malformed_lines.items() if v}
    assert set(s.malformed_lines) == {
        "invalid_json",
        "wrong_type",
        "missing_field",
        "unknown_event_type",
    }
    assert all(v > 0 for v in s.malformed_lines.values())
    assert len(clean_lines) == s.events_written
    copies = sum(len(v) - 1 for v in clean_lines.values())
    assert copies == s.duplicate_lines > 0
    assert s.lines_written == s.events_written + s.duplicate_lines + sum(s.malformed_lines.values())
    # duplicates are exact copies, in the same file or the next day's file
    same_day = next_day = 0
    for copies_of in clean_lines.values():
        if len(copies_of) > 1:
            assert len({line for _, line in copies_of}) == 1
            days = sorted(dt.date.fromisoformat(d) for d, _ in copies_of)
            assert days[-1] - days[0] <= dt.timedelta(days=1)
            same_day += days[0] == days[-1]
            next_day += days[0] != days[-1]
    assert same_day > 0 and next_day > 0
    # roughly an even split of the dirty rate over the kinds
    total = s.lines_written
    for n in (
        s.duplicate_lines,
        sum(s.malformed_lines.values()),
        s.late_events,
        s.skewed_events,
        s.bot_events,
    ):
        assert 0.3 * DIRTY_RATE / 5 * total < n < 2.5 * DIRTY_RATE / 5 * total


def test_malformed_lines_of_each_kind(dirty_rows):
    samples = defaultdict(list)
    for _, line, r, _ in dirty_rows:
        if r:
            samples[r].append(line)
    assert any(re.search(r'"occurred_at":\d+[,}]', x) for x in samples["wrong_type"])
    assert any('"position_s":"' in x for x in samples["wrong_type"])
    assert any('"event_id"' not in x for x in samples["missing_field"])
    assert any('"device_id"' not in x for x in samples["missing_field"])
    assert all(
        json.loads(x)["event_type"] not in EVENT_TYPES for x in samples["unknown_event_type"]
    )
    assert all(
        x.startswith('{"event_id":') and not x.endswith("}") for x in samples["invalid_json"]
    )


def test_no_dirty_data_at_zero_rate(clean):
    out, s = clean
    assert s.duplicate_lines == s.late_events == s.skewed_events == 0
    assert s.bot_devices == s.bot_events == 0
    assert sum(s.malformed_lines.values()) == 0
    assert s.lines_written == s.events_written


def test_zero_rate_files_have_only_valid_unique_events(small_dirty, tmp_path):
    simulate(tmp_path, seed=5, **SMALL)
    ids = set()
    for _, line in event_lines(tmp_path):
        assert rejection_reason(line) is None
        ev = json.loads(line)
        assert ev["event_id"] not in ids
        ids.add(ev["event_id"])
        assert ts(ev["received_at"]) - ts(ev["occurred_at"]) < dt.timedelta(minutes=2)


def test_late_events_land_in_later_day_files(dirty, dirty_rows):
    _, s = dirty
    late = set()
    for day, _, r, ev in dirty_rows:
        if r is None:
            lag = ts(ev["received_at"]) - ts(ev["occurred_at"])
            if lag > dt.timedelta(hours=12):
                assert dt.timedelta(hours=21) < lag < dt.timedelta(days=5)
                assert day > ev["occurred_at"][:10]
                late.add(ev["event_id"])
    assert len(late) == s.late_events > 0


def test_skewed_clocks(dirty, dirty_db):
    _, s = dirty
    # skewed devices: occurred_at differs from received_at by minutes to two hours
    skewed = dirty_db.execute("""select count(*) from e
        where abs(epoch(rec) - epoch(occ)) between 100 and 7300""").fetchone()[0]
    assert skewed >= 0.8 * s.skewed_events > 0
    ahead = dirty_db.execute("select count(*) from e where occ > rec + interval 2 hour")
    assert ahead.fetchone()[0] == 0


def test_bots(dirty, dirty_db):
    _, s = dirty
    con = dirty_db
    # scrapers: hundreds of page views an hour from one device
    busiest = con.execute("""select max(n) from (select device_id, date_trunc('hour', rec) h,
                             count(*) n from e where et='page_view' group by all)""").fetchone()[0]
    # non-stop players: the longest stretch of playback without a 10-minute break, per device
    streaks = dict(
        con.execute("""
        with p as (select device_id, occ, occ - lag(occ) over (partition by device_id order by occ)
                   > interval 10 minute brk from e where pb is not null),
        g as (select *, sum(coalesce(brk, true)::int) over (partition by device_id order by occ) k
              from p)
        select device_id, max(epoch(hi - lo)) / 3600 from (select device_id, k, min(occ) lo,
               max(occ) hi from g group by all) group by all""").fetchall()
    )
    marathons = [d for d, hours in streaks.items() if hours >= 20]
    assert s.bot_devices >= 2 and busiest >= 200 and marathons
    # people do not: no playback of anyone else lasts six hours
    longest = con.execute(
        """select max(epoch(hi - lo)) / 3600 from (select pb, min(occ) lo, max(occ) hi from e
           where pb is not null and device_id not in (select unnest(?)) group by all)""",
        [marathons],
    ).fetchone()[0]
    assert longest < 6
    # a playback belongs to one device, user and title
    shared = con.execute("""select count(*) from (select pb from e where pb is not null
        group by pb having count(distinct device_id) > 1 or count(distinct user_id) > 1
        or count(distinct title_id) > 1)""")
    assert shared.fetchone()[0] == 0


# --------------------------------------------------------------------------- behaviour


def test_users_concentrate_on_few_categories(clean_db):
    share, fans = clean_db.execute("""
        with p as (select distinct user_id, title_id from e where et='play_start'),
        uc as (select user_id, category, count(*) n from p join cat using (title_id) group by all),
        u as (select user_id, max(n) / sum(n) top, max(n) best from uc group by all
              having sum(n) >= 10)
        select avg(top), count(*) filter (where best > 5) from u""").fetchone()
    assert share > 3 / 12
    assert fans > 20


def test_series_are_watched_in_order_with_binges(clean_db):
    out_of_order, forward, binges = clean_db.execute("""
        with s as (select user_id, pb, min(occ) t, any_value(title_id) title_id
                   from e where et='play_start' group by all),
        x as (select s.*, c.series_id, c.season * 1000 + c.episode o
              from s join cat c using (title_id)
              where c.kind = 'episode'),
        l as (select *, lag(o) over w prev, lag(t) over w prev_t from x
              window w as (partition by user_id, series_id order by t))
        select count(*) filter (where o < prev), count(*) filter (where o > prev),
               count(*) filter (where o > prev and t - prev_t < interval 2 hour)
        from l where prev is not null""").fetchone()
    assert out_of_order == 0
    assert forward > 300 and binges > 100


def test_completion_is_higher_in_preferred_categories(clean_db):
    rows = dict(
        clean_db.execute("""
        with p as (select pb, any_value(user_id) user_id, any_value(title_id) title_id,
                   bool_or(et='complete') done from e where pb is not null group by all),
        pc as (select p.*, c.category from p join cat c using (title_id)),
        n as (select user_id, category, count(*) n from pc group by all),
        rk as (select user_id, category, row_number() over (partition by user_id
               order by n desc, category) r from n)
        select r = 1, avg(done::int) from pc join rk using (user_id, category) group by all
        """).fetchall()
    )
    assert rows[True] > rows[False] + 0.04


def test_interest_follows_how_much_was_watched(clean_db):
    rows = dict(
        clean_db.execute("""
        with w as (select user_id, title_id, max(pos / dur) pct from e where pb is not null
                   group by all),
        i as (select user_id, title_id, et, (props->>'$.rating')::int r from e
              where et in ('like', 'dislike', 'rating'))
        select case when et = 'rating' then 'rating' || (r >= 4)::int else et end, avg(pct)
        from i join w using (user_id, title_id) group by all""").fetchall()
    )
    assert rows["like"] > 0.8 and rows["dislike"] < rows["like"] - 0.2
    assert rows["rating1"] > rows["rating0"] + 0.15


def test_cancellations_and_disengagement(clean_db):
    con = clean_db
    bad = con.execute("""
        select count(*) from e c where et = 'cancel' and not exists (
          select 1 from e s where s.et = 'survey_response' and s.user_id = c.user_id
          and s.props->>'$.survey_id' = 'unsubscribe' and s.props->>'$.question_id' = 'reason'
          and s.props->>'$.answer' = c.props->>'$.reason' and s.occ between c.occ
          and c.occ + interval 1 minute)""").fetchone()[0]
    assert bad == 0
    reasons = {
        r for (r,) in con.execute("select props->>'$.reason' from e where et='cancel'").fetchall()
    }
    assert reasons and reasons <= REASONS
    # disengaged users (few plays, many abandons) cancel more often
    lo, hi = con.execute("""
        with u as (select user_id, count(distinct pb) plays,
                     avg(case when et in ('complete','stop') then (pos / dur < 0.5)::int end) ab
                   from e where user_id is not null group by all),
        c as (select distinct user_id from e where et = 'cancel'),
        r as (select u.*, c.user_id is not null cancelled,
                     ntile(2) over (order by plays - 10 * coalesce(ab, 1), user_id) half from u
              left join c using (user_id))
        select avg(cancelled::int) filter (where half = 1),
               avg(cancelled::int) filter (where half = 2)
        from r""").fetchone()
    assert lo > 1.5 * hi
    # nothing plays between a cancellation and a reactivation; deleted users stop
    assert (
        con.execute("""
        select count(*) from e p join e c on p.user_id = c.user_id and c.et = 'cancel'
        where p.et = 'play_start' and p.occ > c.occ and not exists (select 1 from e r
          where r.user_id = c.user_id and r.et = 'reactivate' and r.occ between c.occ and p.occ)
        """).fetchone()[0]
        == 0
    )
    assert (
        con.execute("""
        select count(*) from e x join e d on x.user_id = d.user_id and d.et = 'deletion_request'
        where x.occ > d.occ""").fetchone()[0]
        == 0
    )
    assert con.execute("select count(*) from e where et = 'reactivate'").fetchone()[0] > 0


def test_sessions_are_separated_by_idle_gaps(clean_db):
    inside, idle, users = clean_db.execute("""
        with g as (select user_id, occ - lag(occ) over (partition by user_id order by occ) gap
                   from e where user_id is not null)
        select count(*) filter (where gap > interval 21 minute and gap < interval 45 minute),
               count(*) filter (where gap >= interval 45 minute),
               count(distinct user_id) filter (where gap >= interval 45 minute)
        from g""").fetchone()
    assert inside == 0  # pauses stay under 20 minutes, sessions are 45+ minutes apart
    assert idle > 1000 and users > 200
    first_is_page_view = clean_db.execute("""
        with g as (select user_id, et, occ, occ - lag(occ) over (partition by user_id order by occ,
                   et) gap from e where user_id is not null)
        select avg((et in ('page_view', 'signup', 'reactivate'))::int) from g
        where gap is null or gap >= interval 45 minute""").fetchone()[0]
    assert first_is_page_view > 0.99


def test_evening_peak(clean_db):
    offsets = ", ".join(f"('{c}', {h})" for c, h, _ in COUNTRIES)
    by_hour = dict(
        clean_db.execute(f"""
        with o(country, h) as (values {offsets})
        select hour(occ + to_minutes((o.h * 60)::int)) local_hour, count(*) from e
        join o using (country) where et = 'play_start' group by 1""").fetchall()
    )
    evening = sum(by_hour.get(h, 0) for h in range(18, 24))
    morning = sum(by_hour.get(h, 0) for h in range(6, 12))
    assert evening > 2 * morning


def test_play_time_reconstructs_from_heartbeats(clean_db):
    """Between consecutive player events the playhead advances by exactly the wall-clock time,
    except across a pause (position unchanged) and at a seek (from_position_s -> position_s)."""
    rows = clean_db.execute("""
        select pb, et, epoch_ms(occ) t, pos, fpos, dur from e where pb is not null
        order by pb, t, et""").fetchall()
    by_play = defaultdict(list)
    for r in rows:
        by_play[r[0]].append(r[1:])
    checked = seeks_back = 0
    for events in by_play.values():
        assert events[0][0] == "play_start"
        for (et_a, t_a, pos_a, _, _), (et_b, t_b, pos_b, fpos_b, _) in zip(
            events, events[1:], strict=False
        ):
            if et_a == "pause":
                assert et_b == "resume" and pos_b == pos_a and t_b > t_a
                continue
            expected = pos_a + (t_b - t_a) / 1000
            got = fpos_b if et_b == "seek" else pos_b
            assert abs(got - expected) < 0.01, (et_a, et_b, pos_a, pos_b, t_a, t_b)
            if et_b == "heartbeat" and et_a == "heartbeat":
                assert t_b - t_a == HEARTBEAT_INTERVAL_S * 1000
            seeks_back += et_b == "seek" and pos_b < fpos_b
            checked += 1
        assert events[-1][2] <= events[-1][4]
    assert checked > 10_000 and seeks_back > 0


def test_drop_off_curve(clean_db):
    early, mid, credits, done = clean_db.execute("""
        select count(*) filter (where et = 'stop' and pos < 300),
               count(*) filter (where et = 'stop' and pos / dur between 0.3 and 0.7),
               count(*) filter (where et = 'stop' and pos / dur > 0.9),
               count(*) filter (where et = 'complete')
        from e where et in ('stop', 'complete')""").fetchone()
    assert early > mid / 2 and credits > 0 and done > early


def test_resumed_playbacks_start_where_the_last_one_stopped(clean_db):
    resumed, matching = clean_db.execute("""
        with s as (select user_id, title_id, pb, occ, et, pos from e
                   where et in ('play_start', 'stop')),
        l as (select *, lag(pos) over w prev_pos, lag(et) over w prev_et from s
              window w as (partition by user_id, title_id order by occ, et desc))
        select count(*) filter (where et = 'play_start' and pos > 0),
               count(*) filter (where et = 'play_start' and pos > 0 and prev_et = 'stop'
                                and prev_pos = pos)
        from l""").fetchone()
    assert resumed > 50 and matching == resumed


def test_suggest_size():
    size = suggest_size(10_000_000, days=90)
    assert size["days"] == 90 and size["users"] > 1000 and size["titles"] >= 100
    assert suggest_size(20_000_000, days=90)["users"] > size["users"]


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        simulate(tmp_path, users=10, titles=5, days=3, seed=1)
    with pytest.raises(ValueError):
        simulate(tmp_path, users=10, titles=50, days=3, seed=1, dirty_rate=1.5)


# --------------------------------------------------------------------------- planted truth


def truth_tables(out: Path, con: duckdb.DuckDBPyConnection) -> None:
    """The run's truth files as tables t_devices, t_favourites and t_playbacks in ``con``."""
    folder = truth_dir(out)
    for table, name in (
        ("t_devices", "devices"),
        ("t_favourites", "favourite_categories"),
        ("t_playbacks", "playbacks"),
    ):
        con.execute(f"create or replace table {table} as select * from '{folder / name}.parquet'")


def test_truth_files_are_deterministic_and_not_landing_files(small_dirty, tmp_path):
    out, _ = small_dirty
    folder = truth_dir(out)
    names = sorted(p.name for p in folder.iterdir())
    assert folder == out / "_truth"
    assert names == ["devices.parquet", "favourite_categories.parquet", "playbacks.parquet"]
    assert not [f for f in landing.discover(out) if "_truth" in f.path.parts]
    assert len(landing.discover(out)) == len(small_dirty[1].files)
    simulate(tmp_path / "again", seed=5, dirty_rate=0.05, **SMALL)
    for name in names:
        assert (folder / name).read_bytes() == (truth_dir(tmp_path / "again") / name).read_bytes()
    # a rerun into the same folder replaces them
    s = simulate(out, seed=5, dirty_rate=0.05, **SMALL)
    assert sorted(p.name for p in folder.iterdir()) == names
    n = duckdb.connect().execute(f"select count(*) from '{folder}/playbacks.parquet'").fetchone()[0]
    assert 0 < n <= s.playbacks


def test_truth_devices_and_bots(dirty, dirty_db):
    out, s = dirty
    con = dirty_db
    truth_tables(out, con)
    rows = con.execute("""
        select count(*), count(*) filter (where is_bot),
               count(*) filter (where bot_kind = 'scraper' and user_id is null and is_bot),
               count(*) filter (where bot_kind = 'non_stop_player' and user_id is not null
                                and is_bot),
               count(*) filter (where not is_bot and bot_kind is null),
               count(distinct device_id)
        from t_devices""").fetchone()
    total, bots, scrapers, players, people, distinct = rows
    assert distinct == total and bots == s.bot_devices == scrapers + players
    assert scrapers >= 1 and players >= 1 and people == total - bots
    # every event's device is known, with the same user, and bot events are the bots' events
    unknown, other_user, bot_events = con.execute("""
        select count(*) filter (where d.device_id is null),
               count(*) filter (where d.user_id is distinct from e.user_id),
               count(*) filter (where d.is_bot)
        from e left join t_devices d using (device_id)""").fetchone()
    assert unknown == 0 and other_user == 0 and bot_events == s.bot_events
    # the kinds are what they say: scrapers view hundreds of pages an hour, players play 20+ h
    busiest = dict(
        con.execute("""select d.bot_kind, max(n) from (select device_id, date_trunc('hour', occ),
                       count(*) n from e where et = 'page_view' group by all)
                       join t_devices d using (device_id) group by all""").fetchall()
    )
    hours = dict(
        con.execute("""select d.bot_kind, max(epoch(hi - lo)) / 3600 from (select device_id,
                       min(occ) lo, max(occ) hi from e where pb is not null group by all)
                       join t_devices d using (device_id) group by all""").fetchall()
    )
    assert busiest["scraper"] >= 200 > busiest[None]
    assert hours["non_stop_player"] >= 20 and "scraper" not in hours
    # the bots' playbacks are flagged, nobody else's
    flagged = con.execute("""select bool_and(p.is_bot = d.is_bot), count(*) filter (where p.is_bot)
                             from t_playbacks p join t_devices d using (device_id)""").fetchone()
    assert flagged[0] and flagged[1] > 0


def test_truth_playbacks_match_the_events(clean, clean_db):
    out, s = clean
    con = clean_db
    truth_tables(out, con)
    missing, extra, differ, n = con.execute("""
        with ev as (select pb, any_value(user_id) user_id, any_value(title_id) title_id,
                    any_value(device_id) device_id from e where pb is not null group by all)
        select count(*) filter (where t.playback_id is null),
               count(*) filter (where ev.pb is null),
               count(*) filter (where t.user_id <> ev.user_id or t.title_id <> ev.title_id
                                or t.device_id <> ev.device_id),
               count(*)
        from ev full join t_playbacks t on t.playback_id = ev.pb""").fetchone()
    assert missing == 0 and extra == 0 and differ == 0 and n <= s.playbacks
    # true play time is the playhead's travel: last position - first, less any seek's jump;
    # a play with no end event (app killed, or still playing when the window ends) has played
    # at most one heartbeat interval past its last event
    rows = con.execute("""
        with p as (select pb, arg_min(pos, occ) first_pos, arg_max(pos, occ) last_pos,
                   coalesce(sum(pos - fpos) filter (where et = 'seek'), 0) jump,
                   bool_or(et in ('complete', 'stop')) ended
                   from e where pb is not null group by all)
        select p.ended, t.true_played_s - (p.last_pos - p.first_pos - p.jump) diff
        from p join t_playbacks t on t.playback_id = p.pb""").fetchall()
    ended = [d for e_, d in rows if e_]
    open_ = [d for e_, d in rows if not e_]
    assert len(ended) > 1000 and all(abs(d) < 1e-6 for d in ended)
    assert open_ and all(0 <= d <= HEARTBEAT_INTERVAL_S for d in open_)


def test_truth_favourite_categories(clean, clean_db):
    out, s = clean
    con = clean_db
    truth_tables(out, con)
    users, rows, ranks, cats, ordered = con.execute("""
        select count(distinct user_id), count(*), list(distinct rank order by rank),
               list(distinct category), bool_and(ordered)
        from (select *, preference >= coalesce(lead(preference) over (partition by user_id
              order by rank), 0) ordered from t_favourites)""").fetchone()
    assert users == s.users and rows == 3 * s.users and ranks == [1, 2, 3]
    assert set(cats) <= CATEGORIES and ordered
    # the planted taste shows in what people watch: titles by the category's planted rank
    by_rank = dict(
        con.execute("""
        with p as (select distinct user_id, title_id from e where et = 'play_start')
        select coalesce(f.rank, 0), count(*) from p join cat using (title_id)
        left join t_favourites f on f.user_id = p.user_id and f.category = cat.category
        group by all""").fetchall()
    )
    assert by_rank[1] > by_rank[2] > by_rank[3]
    assert by_rank[1] > 0.3 * sum(by_rank.values())  # one category of 12: 8 % by chance


@pytest.mark.parametrize("users", [1, 2, 5])
def test_a_handful_of_viewers_is_a_valid_simulation(tmp_path, users):
    # With so few viewers some days show no home page at all (no rail to render).
    summary = simulate(tmp_path / "landing", users=users, titles=20, days=2, seed=3)
    assert summary.events_written > 0
    for path in summary.event_files:
        with gzip.open(path, "rt") as f:
            for line in f:
                json.loads(line)


def test_the_cli_refuses_sizes_the_simulator_cannot_build(tmp_path, capsys):
    from ottp import cli

    assert cli.main(["simulate", "--out", str(tmp_path), "--titles", "5", "--quiet"]) == 2
    assert "titles must be at least" in capsys.readouterr().err
