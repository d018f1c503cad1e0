"""Exactly-once loading of landing files into the warehouse's raw schema.

Every line of every file ends up in exactly one place: ``raw.events`` (or
``raw.titles``), counted as a duplicate, or ``raw.rejected_events`` (or
``raw.rejected_titles``) with a reason. A load is one DuckDB transaction: a
crash part-way leaves the previous state and the next run redoes the files.

The per-line work (splitting, JSON parsing, validation, deduplication) runs
in DuckDB; Python only lists files, hashes them and issues statements.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from ottp import landing
from ottp.config import RAW_SCHEMA

EVENT_TYPES = {
    "navigation": ("page_view", "rail_impression", "title_click", "search"),
    "player": ("play_start", "heartbeat", "pause", "resume", "seek", "complete", "stop"),
    "interest": ("like", "dislike", "rating", "add_to_watchlist", "share"),
    "account": ("signup", "subscribe", "cancel", "reactivate", "consent_update", "deletion_request"),
    "survey": ("survey_response",),
}
ALL_EVENT_TYPES = tuple(t for family in EVENT_TYPES.values() for t in family)
PLATFORMS = ("web", "ios", "android", "tv")

# Why a line was rejected; the ``reason`` column adds the field concerned.
REJECT_REASONS = (
    "invalid_encoding",  # not UTF-8
    "line_too_long",  # over MAX_LINE_BYTES
    "empty_line",
    "invalid_json",  # truncated or otherwise unparsable
    "not_an_object",  # valid JSON, but not an object
    "missing_field",  # a required field is absent or null
    "wrong_type",  # a field of the wrong JSON type or an unparsable value
    "invalid_value",  # the right type, outside the allowed domain
    "unknown_event_type",
    "unsupported_schema_version",
    "timestamp_out_of_range",
)
MAX_LINE_BYTES = 1 << 20
# Landing file kind -> (table written, table of rejected lines).
_TABLES = {"events": ("events", "rejected_events"), "catalog": ("titles", "rejected_titles")}
# Client clocks drift; anything further off than this is not a real event time.
MAX_CLOCK_AHEAD_HOURS = 24
MIN_EVENT_TIME = "2000-01-01"

# Every field is read as text (numbers keep their digits) or raw JSON (to check
# its JSON type), so a wrong type is told apart from a missing field.
_EVENT_STRUCT = (
    '{"event_id":"VARCHAR","event_type":"VARCHAR","schema_version":"VARCHAR",'
    '"occurred_at":"VARCHAR","received_at":"VARCHAR","user_id":"VARCHAR",'
    '"device_id":"VARCHAR","platform":"VARCHAR","app_version":"VARCHAR",'
    '"country":"VARCHAR","playback_id":"VARCHAR","title_id":"VARCHAR",'
    '"position_s":"JSON","duration_s":"JSON","from_position_s":"JSON",'
    '"properties":"JSON"}'
)
_TITLE_STRUCT = (
    '{"title_id":"VARCHAR","name":"VARCHAR","category":"VARCHAR","keywords":"JSON",'
    '"kind":"VARCHAR","series_id":"VARCHAR","season":"JSON","episode":"JSON",'
    '"duration_s":"JSON","release_year":"JSON","available_from":"VARCHAR",'
    '"is_available":"JSON"}'
)

RAW_DDL = f"""
create schema if not exists {RAW_SCHEMA};
create table if not exists {RAW_SCHEMA}.events (
    event_id uuid not null,
    event_type varchar not null,
    schema_version varchar not null,
    occurred_at timestamp not null,
    received_at timestamp not null,
    user_id varchar,
    device_id varchar not null,
    platform varchar not null,
    app_version varchar,
    country varchar,
    playback_id varchar,
    title_id varchar,
    position_s double,
    duration_s double,
    from_position_s double,
    properties json,
    landing_date date not null,
    source_file varchar not null,
    load_id varchar not null,
    loaded_at timestamp not null
);
create table if not exists {RAW_SCHEMA}.titles (
    title_id varchar not null,
    name varchar not null,
    category varchar not null,
    keywords varchar[],
    kind varchar not null,
    series_id varchar,
    season integer,
    episode integer,
    duration_s double not null,
    release_year integer,
    available_from date,
    is_available boolean not null,
    snapshot_date date not null,
    source_file varchar not null,
    load_id varchar not null,
    loaded_at timestamp not null
);
create table if not exists {RAW_SCHEMA}.rejected_events (
    source_file varchar not null,
    line_number bigint,
    raw_line varchar,
    reason_code varchar not null,
    reason varchar not null,
    landing_date date not null,
    load_id varchar not null,
    rejected_at timestamp not null
);
create table if not exists {RAW_SCHEMA}.rejected_titles as
    select * from {RAW_SCHEMA}.rejected_events limit 0;
create table if not exists {RAW_SCHEMA}.load_manifest (
    load_id varchar not null,
    file_path varchar not null,
    file_kind varchar not null,
    landing_date date not null,
    size_bytes bigint not null,
    sha256 varchar not null,
    status varchar not null,
    lines_in bigint not null,
    loaded bigint not null,
    duplicates bigint not null,
    rejected bigint not null,
    loaded_at timestamp not null
);
"""


@dataclass
class FileResult:
    path: str
    kind: str
    landing_date: date
    status: str  # loaded | already_loaded | duplicate_file | unreadable
    lines_in: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None
    sha256: str | None = None
    size_bytes: int = 0

    @property
    def reconciles(self) -> bool:
        return self.lines_in == self.loaded + self.duplicates + self.rejected


@dataclass
class LoadReport:
    load_id: str
    files: list[FileResult] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def _sum(self, attr: str, kind: str | None = None) -> int:
        return sum(getattr(f, attr) for f in self.files if kind is None or f.kind == kind)

    @property
    def lines_in(self) -> int:
        return self._sum("lines_in")

    @property
    def loaded(self) -> int:
        return self._sum("loaded")

    @property
    def duplicates(self) -> int:
        return self._sum("duplicates")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def events_loaded(self) -> int:
        return self._sum("loaded", "events")

    @property
    def reconciles(self) -> bool:
        return all(f.reconciles for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def to_dict(self) -> dict:
        return {
            "load_id": self.load_id,
            "files_loaded": self.count("loaded"),
            "files_already_loaded": self.count("already_loaded"),
            "files_duplicate": self.count("duplicate_file"),
            "files_unreadable": self.count("unreadable"),
            "lines_in": self.lines_in,
            "loaded": self.loaded,
            "events_loaded": self.events_loaded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "reconciles": self.reconciles,
            "seconds": round(self.seconds, 3),
        }

    def format_table(self) -> str:
        lines = [
            f"{'kind':8} {'files':>6} {'lines_in':>12} {'loaded':>12} {'duplicates':>11} "
            f"{'rejected':>9}"
        ]
        for kind in landing.FILE_KINDS:
            files = [f for f in self.files if f.kind == kind]
            if not files:
                continue
            lines.append(
                f"{kind:8} {len(files):>6} {sum(f.lines_in for f in files):>12,} "
                f"{sum(f.loaded for f in files):>12,} {sum(f.duplicates for f in files):>11,} "
                f"{sum(f.rejected for f in files):>9,}"
            )
        status = ", ".join(
            f"{n} {s.replace('_', ' ')}"
            for s in ("loaded", "already_loaded", "duplicate_file", "unreadable")
            if (n := self.count(s))
        )
        lines.append(f"files: {status or 'none'}")
        if self.rejected_by_reason:
            lines.append(
                "rejected by reason: "
                + ", ".join(f"{k}={v:,}" for k, v in sorted(self.rejected_by_reason.items()))
            )
        verdict = "holds" if self.reconciles else "DOES NOT HOLD"
        lines.append(f"reconciliation lines_in = loaded + duplicates + rejected: {verdict}")
        return "\n".join(lines)


def connect(warehouse_path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    Path(warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse_path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    return con


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(RAW_DDL)


def load_landing(
    warehouse_path: Path, landing_dir: Path, day: date | None = None
) -> LoadReport:
    """Load every landing file (of one day, if given) that is not loaded yet."""
    return load_files(warehouse_path, landing.discover(landing_dir, day))


def load_files(warehouse_path: Path, files: Sequence[landing.LandingFile]) -> LoadReport:
    """Load the given files in one transaction; files already loaded are skipped."""
    started = time.perf_counter()
    report = LoadReport(load_id=uuid.uuid4().hex)
    con = connect(warehouse_path)
    try:
        ensure_raw_schema(con)
        pending = _skip_known_files(con, files, report)
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        # Reading and validating only fill temp tables, so they run before the
        # transaction: a file that fails to read must not abort it.
        staged = {}
        for kind in landing.FILE_KINDS:
            batch = [(f, sha) for f, sha in pending if f.kind == kind]
            if batch:
                staged[kind] = _stage_batch(con, kind, batch, report)
        con.execute("begin transaction")
        try:
            for kind, readable in staged.items():
                _write_batch(con, kind, readable, report, loaded_at)
            _write_manifest(con, report, loaded_at)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def _skip_known_files(
    con: duckdb.DuckDBPyConnection,
    files: Iterable[landing.LandingFile],
    report: LoadReport,
) -> list[tuple[landing.LandingFile, str]]:
    """Drop files whose content was loaded before, under this path or another."""
    known = {
        sha: (path, lines)
        for path, sha, lines in con.execute(
            f"select file_path, sha256, lines_in from {RAW_SCHEMA}.load_manifest "
            "where status = 'loaded'"
        ).fetchall()
    }
    pending: list[tuple[landing.LandingFile, str]] = []
    seen_now: set[str] = set()
    for f in files:
        sha = landing.sha256_of(f.path)
        if sha in known or sha in seen_now:
            old_path, old_lines = known.get(sha, (str(f.path), 0))
            if old_path == str(f.path):
                status, lines = "already_loaded", 0
            else:
                # A re-delivery under a new name: every line is a duplicate.
                status, lines = "duplicate_file", old_lines
            report.files.append(
                FileResult(
                    str(f.path), f.kind, f.partition_date, status,
                    lines_in=lines, duplicates=lines, sha256=sha, size_bytes=f.size_bytes,
                )
            )
            continue
        seen_now.add(sha)
        pending.append((f, sha))
    return pending


def _read_lines(
    con: duckdb.DuckDBPyConnection,
    batch: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
) -> list[tuple[landing.LandingFile, str]]:
    """Split files into lines in ``_lines``; the reader's refusals land in ``_line_rejects``.

    A file that cannot be read at all (corrupt gzip) is reported unreadable and
    left out of the manifest, so a fixed re-delivery is picked up later.
    """
    try:
        _scan_lines(con, [str(f.path) for f, _ in batch])
        return batch
    except duckdb.Error:
        pass
    readable = []
    for f, sha in batch:
        try:
            _scan_lines(con, [str(f.path)])
            readable.append((f, sha))
        except duckdb.Error as exc:
            report.files.append(
                FileResult(
                    str(f.path), f.kind, f.partition_date, "unreadable",
                    error=str(exc).splitlines()[0][:500],
                )
            )
    if readable:
        _scan_lines(con, [str(f.path) for f, _ in readable])
    else:
        con.execute("create or replace temp table _lines (file_path varchar, line varchar)")
        con.execute(
            "create or replace temp table _line_rejects "
            "(file_path varchar, line ubigint, error_type varchar, csv_line varchar)"
        )
    return readable


def _scan_lines(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    con.execute("drop table if exists _reader_errors")
    con.execute("drop table if exists _reader_scans")
    con.execute(
        f"""
        create or replace temp table _lines as
        select filename as file_path, line
        from read_csv($paths, columns = {{'line': 'VARCHAR'}}, header = false,
                      delim = '\x1f', quote = '', escape = '', new_line = '\\n',
                      auto_detect = false, filename = true, max_line_size = {MAX_LINE_BYTES},
                      ignore_errors = true, store_rejects = true,
                      rejects_table = '_reader_errors', rejects_scan = '_reader_scans')
        """,
        {"paths": paths},
    )
    con.execute(
        """
        create or replace temp table _line_rejects as
        select s.file_path, e.line, e.error_type, e.csv_line
        from _reader_errors e join _reader_scans s using (scan_id, file_id)
        """
    )


def _stage_batch(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    batch: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
) -> list[tuple[landing.LandingFile, str]]:
    """Read and validate one kind's files into temp tables suffixed with the kind."""
    con.execute(
        f"create or replace temp table _batch_files_{kind} "
        "(file_path varchar, landing_date date, sha256 varchar)"
    )
    con.executemany(
        f"insert into _batch_files_{kind} values (?, ?, ?)",
        [(str(f.path), f.partition_date, sha) for f, sha in batch],
    )
    readable = _read_lines(con, batch, report)
    if kind == "events":
        _validate_events(con)
    else:
        _validate_titles(con)
    for table in ("_lines", "_line_rejects", "_validated"):
        con.execute(f"drop table if exists {table}_{kind}")
        con.execute(f"alter table {table} rename to {table}_{kind}")
    return readable


def _write_batch(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    readable: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
    loaded_at: datetime,
) -> None:
    target, reject_table = _TABLES[kind]
    params = {"load_id": report.load_id, "loaded_at": loaded_at}
    con.execute(
        f"""
        insert into {RAW_SCHEMA}.{reject_table}
        select e.file_path, e.line, e.csv_line,
               case e.error_type when 'INVALID ENCODING' then 'invalid_encoding'
                                 when 'LINE SIZE OVER MAXIMUM' then 'line_too_long'
                                 else 'invalid_json' end,
               case e.error_type when 'INVALID ENCODING' then 'invalid_encoding: not UTF-8'
                                 when 'LINE SIZE OVER MAXIMUM' then 'line_too_long: over '
                                      || {MAX_LINE_BYTES} || ' bytes'
                                 else 'invalid_json: ' || e.error_type end,
               p.landing_date, $load_id, $loaded_at
        from _line_rejects_{kind} e join _batch_files_{kind} p using (file_path)
        """,
        params,
    )
    if kind == "events":
        _insert_events(con, report.load_id, loaded_at)
    else:
        _insert_titles(con, report.load_id, loaded_at)
    con.execute(
        f"""
        insert into {RAW_SCHEMA}.{reject_table}
        select v.file_path, null, v.line, v.reason_code, v.reason, p.landing_date,
               $load_id, $loaded_at
        from _validated_{kind} v join _batch_files_{kind} p using (file_path)
        where v.reason_code is not null
        """,
        params,
    )
    _count_files(con, kind, readable, report)


def _count_files(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    readable: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
) -> None:
    """Per-file counts, each from where the rows actually ended up."""
    target, reject_table = _TABLES[kind]
    rows = con.execute(
        f"""
        with read_in as (
            select file_path, count(*) as n from _lines_{kind} group by all
            union all
            select file_path, count(*) from _line_rejects_{kind} group by all
        ),
        valid as (
            select file_path, count(*) as n from _validated_{kind}
            where reason_code is null group by all
        ),
        landed as (
            select source_file as file_path, count(*) as n from {RAW_SCHEMA}.{target}
            where load_id = $load_id group by all
        ),
        rejected as (
            select source_file as file_path, count(*) as n from {RAW_SCHEMA}.{reject_table}
            where load_id = $load_id group by all
        )
        select f.file_path,
               coalesce((select sum(n) from read_in r where r.file_path = f.file_path), 0),
               coalesce((select n from landed l where l.file_path = f.file_path), 0),
               coalesce((select n from valid v where v.file_path = f.file_path), 0),
               coalesce((select n from rejected j where j.file_path = f.file_path), 0)
        from _batch_files_{kind} f
        """,
        {"load_id": report.load_id},
    ).fetchall()
    counts = {r[0]: r[1:] for r in rows}
    for f, sha in readable:
        lines_in, loaded, valid, rejected = counts[str(f.path)]
        report.files.append(
            FileResult(
                str(f.path), kind, f.partition_date, "loaded",
                lines_in=lines_in, loaded=loaded, duplicates=valid - loaded, rejected=rejected,
                sha256=sha, size_bytes=f.size_bytes,
            )
        )
    for reason, n in con.execute(
        f"select reason_code, count(*) from {RAW_SCHEMA}.{reject_table} "
        "where load_id = $load_id group by all",
        {"load_id": report.load_id},
    ).fetchall():
        report.rejected_by_reason[reason] = report.rejected_by_reason.get(reason, 0) + n


def _json_number(col: str) -> str:
    """A JSON field that must be a number: null if absent, 'wrong' if not a number."""
    return (
        f"case when {col} is null or {col}::varchar = 'null' then null "
        f"when left({col}::varchar, 1) in ('\"', '{{', '[', 't', 'f') then 'NaN'::double "
        f"else coalesce(try_cast({col}::varchar as double), 'NaN'::double) end"
    )


def _validate_events(con: duckdb.DuckDBPyConnection) -> None:
    """Parse each line once and give the first reason it fails, or null if valid."""
    types_sql = ", ".join(f"'{t}'" for t in ALL_EVENT_TYPES)
    player_sql = ", ".join(f"'{t}'" for t in EVENT_TYPES["player"])
    with_user_sql = ", ".join(
        f"'{t}'" for t in EVENT_TYPES["interest"] + EVENT_TYPES["account"] + EVENT_TYPES["survey"]
    )
    with_title_sql = ", ".join(f"'{t}'" for t in ("title_click",) + EVENT_TYPES["interest"])
    platforms_sql = ", ".join(f"'{p}'" for p in PLATFORMS)
    con.execute(
        f"""
        create or replace temp table _validated as
        with parsed as (
            select file_path, line,
                   case when line is not null and left(ltrim(line), 1) = '{{'
                        then try(json_transform(line, '{_EVENT_STRUCT}')) end as j
            from _lines
        ),
        typed as (
            select file_path, line, j,
                   try_cast(j.event_id as uuid) as event_id,
                   j.event_type as event_type,
                   try_cast(j.occurred_at as timestamptz) at time zone 'UTC' as occurred_at,
                   try_cast(j.received_at as timestamptz) at time zone 'UTC' as received_at,
                   {_json_number('j.position_s')} as position_s,
                   {_json_number('j.duration_s')} as duration_s,
                   {_json_number('j.from_position_s')} as from_position_s,
                   case when j.properties is null then null
                        when left(j.properties::varchar, 1) = '{{' then j.properties end
                       as properties,
                   j.properties is not null and left(j.properties::varchar, 1) <> '{{'
                       and j.properties::varchar <> 'null' as properties_not_object,
                   try_cast(j.properties->>'rating' as integer) as rating
            from parsed
        ),
        checked as (
            select *,
                case
                    when line is null or trim(line) = '' then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when j.event_id is null then 'missing_field|event_id'
                    when j.event_type is null then 'missing_field|event_type'
                    when j.schema_version is null then 'missing_field|schema_version'
                    when j.occurred_at is null then 'missing_field|occurred_at'
                    when j.received_at is null then 'missing_field|received_at'
                    when j.device_id is null then 'missing_field|device_id'
                    when j.platform is null then 'missing_field|platform'
                    when event_id is null then 'wrong_type|event_id is not a uuid'
                    when occurred_at is null then 'wrong_type|occurred_at is not a timestamp'
                    when received_at is null then 'wrong_type|received_at is not a timestamp'
                    when properties_not_object then 'wrong_type|properties is not an object'
                    when not regexp_full_match(j.schema_version, '1\\.[0-9]+')
                        then 'unsupported_schema_version|' || j.schema_version
                    when event_type not in ({types_sql})
                        then 'unknown_event_type|' || left(event_type, 100)
                    when j.platform not in ({platforms_sql})
                        then 'invalid_value|platform ' || left(j.platform, 50)
                    when isnan(position_s) or isinf(position_s)
                        then 'wrong_type|position_s is not a number'
                    when isnan(duration_s) or isinf(duration_s)
                        then 'wrong_type|duration_s is not a number'
                    when isnan(from_position_s) or isinf(from_position_s)
                        then 'wrong_type|from_position_s is not a number'
                    when event_type in ({player_sql}) and j.user_id is null
                        then 'missing_field|user_id'
                    when event_type in ({player_sql}) and j.playback_id is null
                        then 'missing_field|playback_id'
                    when event_type in ({player_sql}) and j.title_id is null
                        then 'missing_field|title_id'
                    when event_type in ({player_sql}) and position_s is null
                        then 'missing_field|position_s'
                    when event_type in ({player_sql}) and duration_s is null
                        then 'missing_field|duration_s'
                    when event_type = 'seek' and from_position_s is null
                        then 'missing_field|from_position_s'
                    when position_s < 0 or from_position_s < 0 or duration_s <= 0
                        then 'invalid_value|negative position or non-positive duration'
                    when event_type in ({with_title_sql}) and j.title_id is null
                        then 'missing_field|title_id'
                    when event_type in ({with_user_sql}) and j.user_id is null
                        then 'missing_field|user_id'
                    when event_type = 'rating' and rating is null
                        then 'missing_field|properties.rating'
                    when event_type = 'rating' and rating not between 1 and 5
                        then 'invalid_value|rating outside 1..5'
                    when event_type = 'consent_update'
                         and try_cast(properties->>'marketing_opt_in' as boolean) is null
                        then 'missing_field|properties.marketing_opt_in'
                    when occurred_at < timestamp '{MIN_EVENT_TIME}'
                         or received_at < timestamp '{MIN_EVENT_TIME}'
                        then 'timestamp_out_of_range|before {MIN_EVENT_TIME}'
                    when received_at > now() at time zone 'UTC'
                         + interval {MAX_CLOCK_AHEAD_HOURS} hour
                        then 'timestamp_out_of_range|received_at in the future'
                    when occurred_at > received_at + interval {MAX_CLOCK_AHEAD_HOURS} hour
                        then 'timestamp_out_of_range|occurred_at after received_at'
                end as verdict
            from typed
        )
        select file_path, line, j, event_id, event_type, occurred_at, received_at,
               position_s, duration_s, from_position_s, properties,
               split_part(verdict, '|', 1) as reason_code,
               split_part(verdict, '|', 1) || ': ' || split_part(verdict, '|', 2) as reason
        from checked
        """
    )
    # split_part on null gives '' in some versions: normalise to null.
    con.execute("update _validated set reason_code = null, reason = null where reason_code = ''")


def _insert_events(con: duckdb.DuckDBPyConnection, load_id: str, loaded_at: datetime) -> None:
    """Insert valid events not seen before; the first received copy of an id wins."""
    con.execute(
        f"""
        insert into {RAW_SCHEMA}.events
        select v.event_id, v.event_type, v.j.schema_version, v.occurred_at, v.received_at,
               v.j.user_id, v.j.device_id, v.j.platform, v.j.app_version, v.j.country,
               v.j.playback_id, v.j.title_id, v.position_s, v.duration_s, v.from_position_s,
               v.properties, p.landing_date, v.file_path, $load_id, $loaded_at
        from _validated_events v
        join _batch_files_events p using (file_path)
        anti join {RAW_SCHEMA}.events e on e.event_id = v.event_id
        where v.reason_code is null
        qualify row_number() over (
            partition by v.event_id order by v.received_at, v.file_path
        ) = 1
        """,
        {"load_id": load_id, "loaded_at": loaded_at},
    )


def _validate_titles(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        create or replace temp table _validated as
        with parsed as (
            select file_path, line,
                   case when line is not null and left(ltrim(line), 1) = '{{'
                        then try(json_transform(line, '{_TITLE_STRUCT}')) end as j
            from _lines
        ),
        typed as (
            select *,
                   {_json_number('j.duration_s')} as duration_s,
                   try_cast(j.season::varchar as integer) as season,
                   try_cast(j.episode::varchar as integer) as episode,
                   try_cast(j.release_year::varchar as integer) as release_year,
                   try_cast(j.available_from as date) as available_from,
                   coalesce(try_cast(j.is_available::varchar as boolean), true) as is_available,
                   try_cast(j.keywords as varchar[]) as keywords
            from parsed
        ),
        checked as (
            select *,
                case
                    when line is null or trim(line) = '' then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when j.title_id is null then 'missing_field|title_id'
                    when j.name is null then 'missing_field|name'
                    when j.category is null then 'missing_field|category'
                    when j.kind is null then 'missing_field|kind'
                    when j.duration_s is null then 'missing_field|duration_s'
                    when isnan(duration_s) or isinf(duration_s)
                        then 'wrong_type|duration_s is not a number'
                    when duration_s <= 0 then 'invalid_value|duration_s not positive'
                    when j.kind not in ('movie', 'episode')
                        then 'invalid_value|kind ' || left(j.kind, 50)
                    when j.kind = 'episode' and j.series_id is null
                        then 'missing_field|series_id'
                    when j.available_from is not null and available_from is null
                        then 'wrong_type|available_from is not a date'
                    when j.keywords is not null and keywords is null
                        then 'wrong_type|keywords is not a list of strings'
                end as verdict
            from typed
        )
        select *, split_part(verdict, '|', 1) as reason_code,
               split_part(verdict, '|', 1) || ': ' || split_part(verdict, '|', 2) as reason
        from checked
        """
    )
    con.execute("update _validated set reason_code = null, reason = null where reason_code = ''")


def _insert_titles(con: duckdb.DuckDBPyConnection, load_id: str, loaded_at: datetime) -> None:
    """Snapshots are kept whole; a title repeated within one file counts as a duplicate."""
    con.execute(
        f"""
        insert into {RAW_SCHEMA}.titles
        select v.j.title_id, v.j.name, v.j.category, v.keywords, v.j.kind, v.j.series_id,
               v.season, v.episode, v.duration_s, v.release_year, v.available_from,
               v.is_available, p.landing_date, v.file_path, $load_id, $loaded_at
        from _validated_catalog v join _batch_files_catalog p using (file_path)
        where v.reason_code is null
        qualify row_number() over (partition by v.file_path, v.j.title_id order by v.line) = 1
        """,
        {"load_id": load_id, "loaded_at": loaded_at},
    )


def _write_manifest(
    con: duckdb.DuckDBPyConnection,
    report: LoadReport,
    loaded_at: datetime,
) -> None:
    rows = []
    for r in report.files:
        # Unreadable files stay out so a fixed re-delivery is loaded; files
        # loaded before have their row already.
        if r.status in ("unreadable", "already_loaded"):
            continue
        rows.append(
            (
                report.load_id, r.path, r.kind, r.landing_date, r.size_bytes, r.sha256, r.status,
                r.lines_in, r.loaded, r.duplicates, r.rejected, loaded_at,
            )
        )
    if rows:
        con.executemany(
            f"insert into {RAW_SCHEMA}.load_manifest values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def reconciliation(warehouse_path: Path) -> dict:
    """Totals over the whole manifest, with the reconciliation recomputed from the tables."""
    con = connect(warehouse_path)
    try:
        manifest = con.execute(
            f"""
            select coalesce(sum(lines_in), 0), coalesce(sum(loaded), 0),
                   coalesce(sum(duplicates), 0), coalesce(sum(rejected), 0),
                   count(*) filter (where status = 'loaded')
            from {RAW_SCHEMA}.load_manifest where file_kind = 'events'
            """
        ).fetchone()
        events, rejected = con.execute(
            f"select (select count(*) from {RAW_SCHEMA}.events), "
            f"(select count(*) from {RAW_SCHEMA}.rejected_events)"
        ).fetchone()
    finally:
        con.close()
    lines_in, loaded, duplicates, manifest_rejected, files = manifest
    return {
        "event_files": files,
        "lines_in": lines_in,
        "events_loaded": loaded,
        "duplicates": duplicates,
        "rejected": manifest_rejected,
        "events_in_table": events,
        "rejected_in_table": rejected,
        "reconciles": lines_in == loaded + duplicates + manifest_rejected
        and events == loaded
        and rejected == manifest_rejected,
    }
