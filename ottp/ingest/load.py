"""Exactly-once loading of landing files into the warehouse's raw schema.

Every line of every file ends up in exactly one place: ``raw.events`` (or
``raw.titles``), counted as a duplicate, or ``raw.rejected_events`` (or
``raw.rejected_titles``) with a reason. A load is one DuckDB transaction: a
crash part-way leaves the previous state and the next run redoes the files.

The per-line work (splitting, JSON parsing, validation, deduplication) runs
in DuckDB; Python only lists files, hashes them and issues statements.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

try:
    from isal import isal_zlib
except ImportError:  # a pure-zlib install still checks every file, more slowly
    isal_zlib = None

from ottp.config import RAW_SCHEMA
from ottp.contract import rules as contract_rules
from ottp.ingest import landing, reject_rules
from ottp.warehouse import LOCK_WAIT_S, connect

logger = logging.getLogger(__name__)

# The event types (by family) and platforms come from the schema, as do the
# validation rules (ottp/contract/rules.py).
EVENT_TYPES = contract_rules.FAMILIES
ALL_EVENT_TYPES = contract_rules.ALL_EVENT_TYPES
PLATFORMS = contract_rules.PLATFORMS

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
# Input per transaction (gzip bytes): bounds memory, see docs/benchmarks.md.
CHUNK_BYTES = 128 << 20
# Landing file kind -> (table written, table of rejected lines).
_TABLES = {"events": ("events", "rejected_events"), "catalog": ("titles", "rejected_titles")}
# Client clocks drift; anything further off than this is not a real event time.
MAX_CLOCK_AHEAD_HOURS = 24
MIN_EVENT_TIME = "2000-01-01"

# Text fields are read as VARCHAR, other fields as raw JSON (to check their
# JSON type). json_transform turns a number or an object in a text field into
# its JSON text, so a line whose text field looks like one (a number, true or
# false, an object or a list) is parsed once more for its JSON types: a wrong
# type is told apart from the text "12345", and ordinary lines pay nothing.
# Text that always looks like a number ("1.0"): read as JSON and unwrapped, so
# that ordinary lines are not all parsed twice.
_EVENT_NUMERIC_STRINGS = ("schema_version",)
_EVENT_STRINGS = tuple(
    f for f in contract_rules.top_level_fields("string") if f not in _EVENT_NUMERIC_STRINGS
)
# Fields whose parsing (uuid, timestamp, date) already rejects any other JSON
# type as wrong_type: not worth a second look.
_PARSED_ANYWAY = ("event_id", "occurred_at", "received_at", "available_from")
_EVENT_JSON = contract_rules.top_level_fields("number") + contract_rules.top_level_fields("object")
_TITLE_STRINGS = ("title_id", "name", "category", "kind", "series_id", "available_from")
_TITLE_JSON = ("keywords", "season", "episode", "duration_s", "release_year", "is_available")


def _struct(strings: Sequence[str], json_fields: Sequence[str]) -> str:
    fields = [f'"{f}":"VARCHAR"' for f in strings] + [f'"{f}":"JSON"' for f in json_fields]
    return "{" + ",".join(fields) + "}"


_EVENT_STRUCT = _struct(_EVENT_STRINGS, _EVENT_NUMERIC_STRINGS + _EVENT_JSON)
_TITLE_STRUCT = _struct(_TITLE_STRINGS, _TITLE_JSON)
# An escaped NUL (\u0000) preceded by an even number of backslashes: neither
# PostgreSQL text nor jsonb can hold it, so it never enters the warehouse.
_ESCAPED_NUL = r"(^|[^\\])(\\\\)*\\u0000"
# JSON string literals, removed before looking for NaN and Infinity outside them.
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'


def _parsed_lines(struct: str, strings: Sequence[str], numeric: Sequence[str] = ()) -> str:
    """CTEs ``raw_parsed`` and ``parsed``: one JSON parse per line.

    ``j`` is null for a line that is not a JSON object; ``not_a_string`` names the
    first text field holding another JSON type; ``has_non_finite`` flags NaN and
    Infinity (DuckDB's parser accepts them, JSON and PostgreSQL do not) and
    ``has_nul`` an escaped NUL. Each field of ``numeric`` comes as ``<field>_text``.
    """
    unwrapped = "".join(
        f"case when left(j.{f}::varchar, 1) = '\"' then j.{f}->>'$' end as {f}_text, "
        for f in numeric
    )
    numeric_wrong = " ".join(f"when left(j.{f}::varchar, 1) <> '\"' then '{f}'" for f in numeric)
    # json_transform renders a non-string value of a text field as its JSON
    # text, which is valid JSON; a real string rarely is ("12345" is). Only
    # those lines pay for the exact look at the JSON types below.
    suspicious = " or ".join(f"json_valid(j.{f})" for f in strings if f not in _PARSED_ANYWAY)
    paths = ", ".join(f"'$.{f}'" for f in strings)
    names = ", ".join(f"'{f}'" for f in strings)
    return f"""
        , raw_parsed as (
            select file_path, line,
                   -- json_valid first: try() would redo a whole vector row by row
                   -- for one bad line, which costs 3x the parse itself
                   case when left(ltrim(line), 1) = '{{' and json_valid(line)
                        then json_transform(line, '{struct}') end as j
            from lines
        ),
        parsed as (
            select file_path, line, j, {unwrapped}
                   case when j is null then null {numeric_wrong}
                        when {suspicious} then
                       ([{names}])[list_position(
                           list_transform(json_type(line, [{paths}]),
                                          lambda t: coalesce(t, 'NULL') not in ('VARCHAR', 'NULL')),
                           true)]
                   end as not_a_string,
                   case
                       when j is null then null
                       when contains(line, 'NaN') or contains(line, 'Infinity') then
                           regexp_matches(
                               regexp_replace(line, '{_JSON_STRING}', '""', 'g'),
                               'NaN|Infinity'
                           )
                       else false
                   end as has_non_finite,
                   -- case, not and: and evaluates the regex on every line
                   case when j is not null and contains(line, '\\u0000')
                        then regexp_matches(line, '{_ESCAPED_NUL}') else false
                   end as has_nul
            from raw_parsed
        )
    """


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
create table if not exists {RAW_SCHEMA}.rejected_files (
    file_path varchar not null,
    file_kind varchar not null,
    landing_date date not null,
    size_bytes bigint not null,
    sha256 varchar not null,
    reason varchar not null,
    load_id varchar not null,
    rejected_at timestamp not null
);
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


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(RAW_DDL)


def load_landing(
    warehouse_path: Path,
    landing_dir: Path,
    day: date | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> LoadReport:
    """Load every landing file (of one day, if given) that is not loaded yet."""
    return load_files(warehouse_path, landing.discover(landing_dir, day), chunk_bytes)


def load_files(
    warehouse_path: Path,
    files: Sequence[landing.LandingFile],
    chunk_bytes: int = CHUNK_BYTES,
    lock_wait_s: float = LOCK_WAIT_S,
) -> LoadReport:
    """Load the given files; files already loaded are skipped.

    Files are loaded in chunks of whole files (at most ``chunk_bytes`` of input
    each, so memory stays bounded); each chunk is one transaction together with
    its manifest rows, so a file is either fully loaded and recorded, or not at all.
    A second loader started meanwhile waits (up to ``lock_wait_s``) for the file.
    """
    started = time.perf_counter()
    report = LoadReport(load_id=uuid.uuid4().hex)
    con = connect(warehouse_path, wait_s=lock_wait_s)
    scratch = tempfile.TemporaryDirectory(prefix="ottp-load-")
    try:
        ensure_raw_schema(con)
        pending = _skip_known_files(con, files, report)
        pending, with_cr = _drop_corrupt_files(pending, report)
        # What the reader reads instead of a file that holds a CR.
        read_paths = {}
        for i, path in enumerate(sorted(with_cr)):
            read_paths[path] = str(Path(scratch.name) / f"{i}.ndjson.gz")
            _without_cr(Path(path), Path(read_paths[path]))
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        _commit(con, lambda: _write_manifest(con, report.files, report.load_id, loaded_at))
        for kind in landing.FILE_KINDS:
            for chunk in _chunks([p for p in pending if p[0].kind == kind], chunk_bytes):
                # Reading and validating fill temp tables only, outside the
                # transaction: a file that cannot be read must not abort it.
                before = len(report.files)
                readable = _stage(con, kind, chunk, report, read_paths)

                def write(kind=kind, readable=readable, before=before) -> None:
                    _write(con, kind, readable, report, loaded_at)
                    _write_manifest(con, report.files[before:], report.load_id, loaded_at)

                _commit(con, write)
                done = report.files[before:]
                logger.info(
                    "committed %d %s files (%d lines) of load %s",
                    sum(1 for f in done if f.status == "loaded"),
                    kind,
                    sum(f.lines_in for f in done),
                    report.load_id,
                )
    finally:
        con.close()
        scratch.cleanup()
    report.seconds = time.perf_counter() - started
    return report


def _commit(con: duckdb.DuckDBPyConnection, work) -> None:
    con.execute("begin transaction")
    try:
        work()
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _chunks(
    files: list[tuple[landing.LandingFile, str]], chunk_bytes: int
) -> Iterable[list[tuple[landing.LandingFile, str]]]:
    chunk: list[tuple[landing.LandingFile, str]] = []
    size = 0
    for item in files:
        if chunk and size + item[0].size_bytes > chunk_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item[0].size_bytes
    if chunk:
        yield chunk


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
                    str(f.path),
                    f.kind,
                    f.partition_date,
                    status,
                    lines_in=lines,
                    duplicates=lines,
                    sha256=sha,
                    size_bytes=f.size_bytes,
                )
            )
            continue
        seen_now.add(sha)
        pending.append((f, sha))
    return pending


_ZLIB_MEANING = {
    "incorrect data check": " (CRC-32 mismatch)",
    "incorrect length check": " (length mismatch)",
    "incorrect header check": " (not gzip data)",
}


def inspect_file(path: Path, chunk_size: int = 1 << 20) -> tuple[str | None, bool]:
    """(why the file is corrupt or None, whether it holds a carriage return).

    DuckDB's gzip reader checks neither the CRC nor the length of a member, so a
    flipped bit would reach the warehouse as a wrong value; zlib checks both.
    Multi-member files (concatenated gzip) are valid. DuckDB's CSV reader
    refuses a whole file for one CR byte, hence the second answer.

    ISA-L inflates about 2.7x faster than zlib and checks the same CRC and
    length; a file it finds fault with is read again with zlib, whose messages
    say which check failed.
    """
    if isal_zlib is not None:
        try:
            problem, has_cr = _inspect(path, chunk_size, isal_zlib.decompressobj)
            if problem is None:
                return problem, has_cr
        except isal_zlib.IsalError:
            pass
    return _inspect(path, chunk_size, zlib.decompressobj)


def _inspect(path: Path, chunk_size: int, inflater) -> tuple[str | None, bool]:
    gz = str(path).endswith(".gz")
    inflate, started, empty, has_cr = inflater(wbits=31), False, True, False
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                empty = False
                if not gz:
                    has_cr = has_cr or b"\r" in chunk
                    continue
                data = chunk
                while data:
                    started = True
                    out = inflate.decompress(data, 1 << 24)  # memory bounded
                    has_cr = has_cr or b"\r" in out
                    data = inflate.unconsumed_tail
                    if inflate.eof:
                        # A member ended; another may follow in the same file.
                        data = inflate.unused_data
                        inflate, started = inflater(wbits=31), False
    except zlib.error as e:
        # "Error -3 while decompressing data: incorrect data check" -> the reason
        detail = str(e).split(": ", 1)[-1]
        return f"corrupt gzip: {detail}{_ZLIB_MEANING.get(detail, '')}", False
    except OSError as e:
        return f"unreadable file: {e}", False
    if not gz:
        return None, has_cr
    if empty:
        return "corrupt gzip: empty file", False
    if started:
        return "corrupt gzip: truncated (unexpected end of stream)", False
    return None, has_cr


def gzip_problem(path: Path) -> str | None:
    """Why a landing file is corrupt (bad CRC or length, truncated, not gzip), or None."""
    return inspect_file(path)[0]


def _without_cr(path: Path, out: Path) -> None:
    """A gzip copy of ``path`` whose CRLF line ends are LF and whose other CRs are 0x1F.

    NDJSON allows CRLF; a CR inside a line is not JSON whitespace the reader can
    keep, so it becomes the reader's delimiter and the line is rejected with a reason.
    """
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as src, gzip.open(out, "wb", compresslevel=1) as dst:
        carry = b""
        while chunk := src.read(1 << 22):
            chunk = carry + chunk
            carry = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[:-1] if carry else chunk
            dst.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\x1f"))
        if carry:
            dst.write(b"\x1f")


def _drop_corrupt_files(
    pending: list[tuple[landing.LandingFile, str]], report: LoadReport
) -> tuple[list[tuple[landing.LandingFile, str]], set[str]]:
    """Check every pending file in parallel (zlib releases the GIL).

    Returns the sound files and the paths of those that hold a CR.
    """
    if not pending:
        return pending, set()
    workers = max(1, min(len(pending), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(workers) as pool:
        checks = list(pool.map(lambda item: inspect_file(item[0].path), pending))
    sound, with_cr = [], set()
    for (f, sha), (problem, has_cr) in zip(pending, checks, strict=True):
        if problem is None:
            sound.append((f, sha))
            if has_cr:
                with_cr.add(str(f.path))
            continue
        logger.warning("rejected landing file %s: %s", f.path, problem)
        report.files.append(
            FileResult(
                str(f.path),
                f.kind,
                f.partition_date,
                "unreadable",
                error=problem,
                sha256=sha,
                size_bytes=f.size_bytes,
            )
        )
    return sound, with_cr


def _reader(paths_param: str = "$paths") -> str:
    """Landing lines as rows of one VARCHAR column; refused lines go to reject tables."""
    return f"""
        read_csv({paths_param}, columns = {{'line': 'VARCHAR'}}, header = false,
                 delim = '\x1f', quote = '', escape = '', new_line = '\\n',
                 auto_detect = false, filename = true, max_line_size = {MAX_LINE_BYTES},
                 ignore_errors = true, store_rejects = true,
                 rejects_table = '_reader_errors', rejects_scan = '_reader_scans')
    """


def _stage(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    chunk: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
    read_paths: dict[str, str] | None = None,
) -> list[tuple[landing.LandingFile, str]]:
    """Parse and validate a chunk into ``_validated`` and ``_line_rejects``.

    A file that cannot be read at all (corrupt gzip) is reported unreadable and
    left out of the manifest, so a fixed re-delivery is picked up later.
    """
    read_paths = read_paths or {}
    validate = _validate_events if kind == "events" else _validate_titles

    def run(files: list[tuple[landing.LandingFile, str]]) -> None:
        _set_batch_files(con, files)
        validate(con, [read_paths.get(str(f.path), str(f.path)) for f, _ in files])
        _restore_paths(con, {r: p for p, r in read_paths.items()})

    try:
        run(chunk)
        return chunk
    except duckdb.Error:
        pass
    readable = []
    for f, sha in chunk:
        try:
            path = read_paths.get(str(f.path), str(f.path))
            con.execute(f"select count(*) from {_reader()}", {"paths": [path]})
            readable.append((f, sha))
        except duckdb.Error as exc:
            report.files.append(
                FileResult(
                    str(f.path),
                    f.kind,
                    f.partition_date,
                    "unreadable",
                    error=str(exc).splitlines()[0][:500],
                    sha256=sha,
                    size_bytes=f.size_bytes,
                )
            )
    run(readable)
    return readable


def _restore_paths(con: duckdb.DuckDBPyConnection, originals: dict[str, str]) -> None:
    """Name the landing file, not the CR-free copy the reader read, in staged rows."""
    if not originals:
        return
    con.execute("create or replace temp table _read_paths (read_path varchar, file_path varchar)")
    con.executemany("insert into _read_paths values (?, ?)", list(originals.items()))
    for table in ("_validated", "_line_rejects"):
        con.execute(
            f"update {table} set file_path = r.file_path from _read_paths as r "
            f"where {table}.file_path = r.read_path"
        )


def _set_batch_files(
    con: duckdb.DuckDBPyConnection, chunk: list[tuple[landing.LandingFile, str]]
) -> None:
    con.execute(
        "create or replace temp table _batch_files "
        "(file_path varchar, landing_date date, sha256 varchar)"
    )
    if not chunk:
        return  # every file of the chunk was unreadable
    con.executemany(
        "insert into _batch_files values (?, ?, ?)",
        [(str(f.path), f.partition_date, sha) for f, sha in chunk],
    )


def _create_validated(
    con: duckdb.DuckDBPyConnection,
    paths: list[str],
    select_sql: str,
    params: dict | None = None,
) -> None:
    """Run one validation query over the files (or none) and collect the reader's refusals.

    ``params`` are the query's own parameters (besides ``$paths``).
    """
    con.execute("drop table if exists _reader_errors")
    con.execute("drop table if exists _reader_scans")
    if paths:
        source = f"select filename as file_path, line from {_reader()}"
    else:
        source = "select null::varchar as file_path, null::varchar as line where false"
    params = {**(params or {}), **({"paths": paths} if paths else {})}
    con.execute(
        f"create or replace temp table _validated as with lines as ({source}) {select_sql}",
        params or None,
    )
    if paths:
        con.execute(
            """
            create or replace temp table _line_rejects as
            select s.file_path, e.line, e.error_type, e.csv_line
            from _reader_errors e join _reader_scans s using (scan_id, file_id)
            -- the reader reports a line once per surplus delimiter: count it once
            qualify row_number() over (
                partition by s.file_path, e.line order by e.error_type
            ) = 1
            """
        )
    else:
        con.execute(
            "create or replace temp table _line_rejects "
            "(file_path varchar, line ubigint, error_type varchar, csv_line varchar)"
        )


def _write(
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
                                 when 'TOO MANY COLUMNS' then 'invalid_json: a raw control '
                                      || 'character (CR or 0x1F) inside the line'
                                 else 'invalid_json: ' || e.error_type end,
               p.landing_date, $load_id, $loaded_at
        from _line_rejects e join _batch_files p using (file_path)
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
        select v.file_path, null, v.raw_line, v.reason_code, v.reason, p.landing_date,
               $load_id, $loaded_at
        from _validated v join _batch_files p using (file_path)
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
    _, reject_table = _TABLES[kind]
    rows = con.execute(
        f"""
        with read_in as (
            select file_path, count(*) as n,
                   count(*) filter (where reason_code is null) as valid
            from _validated group by all
        ),
        refused as (
            select file_path, count(*) as n from _line_rejects group by all
        ),
        landed as (
            select file_path, n from _landed
        ),
        rejected as (
            select source_file as file_path, count(*) as n from {RAW_SCHEMA}.{reject_table}
            where load_id = $load_id and source_file in (select file_path from _batch_files)
            group by all
        )
        select f.file_path,
               coalesce(r.n, 0) + coalesce(x.n, 0),
               coalesce(l.n, 0),
               coalesce(r.valid, 0),
               coalesce(j.n, 0)
        from _batch_files f
        left join read_in r using (file_path)
        left join refused x using (file_path)
        left join landed l using (file_path)
        left join rejected j using (file_path)
        """,
        {"load_id": report.load_id},
    ).fetchall()
    counts = {r[0]: r[1:] for r in rows}
    for f, sha in readable:
        lines_in, loaded, valid, rejected = counts[str(f.path)]
        report.files.append(
            FileResult(
                str(f.path),
                kind,
                f.partition_date,
                "loaded",
                lines_in=lines_in,
                loaded=loaded,
                duplicates=valid - loaded,
                rejected=rejected,
                sha256=sha,
                size_bytes=f.size_bytes,
            )
        )
    for reason, n in con.execute(
        f"""
        select reason_code, count(*) from {RAW_SCHEMA}.{reject_table}
        where load_id = $load_id and source_file in (select file_path from _batch_files)
        group by all
        """,
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


def _verdict_columns() -> str:
    """reason_code and reason from a 'code|detail' verdict; the raw line kept only if rejected."""
    return """
        split_part(verdict, '|', 1) as reason_code,
        regexp_replace(verdict, '\\|', ': ') as reason,
        case when verdict is not null then line end as raw_line
    """


_DATE_TIME = reject_rules.duckdb_literal(contract_rules.DATE_TIME_PATTERN)


def _event_rule_checks() -> str:
    """The CASE branches of every contract rule, in RULES' order (ottp.ingest.reject_rules)."""
    return "\n                    ".join(reject_rules.event_rule_branches(reject_rules.DUCKDB))


def _validate_events(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """Parse each line once and give the first reason it fails, or null if valid."""
    numbers = ",\n                   ".join(
        f"{_json_number('j.' + f)} as {f}" for f in contract_rules.top_level_fields("number")
    )
    _create_validated(
        con,
        paths,
        f"""
        {_parsed_lines(_EVENT_STRUCT, _EVENT_STRINGS, _EVENT_NUMERIC_STRINGS)},
        typed as (
            select file_path, line, j, schema_version_text, not_a_string, has_non_finite, has_nul,
                   try_cast(j.event_id as uuid) as event_id,
                   j.event_type as event_type,
                   case when regexp_full_match(j.occurred_at, {_DATE_TIME})
                        then try_cast(upper(j.occurred_at) as timestamptz) at time zone 'UTC'
                   end as occurred_at,
                   case when regexp_full_match(j.received_at, {_DATE_TIME})
                        then try_cast(upper(j.received_at) as timestamptz) at time zone 'UTC'
                   end as received_at,
                   {numbers},
                   case when left(j.properties::varchar, 1) = '{{' then j.properties end
                       as properties,
                   j.properties is not null and left(j.properties::varchar, 1) <> '{{'
                       and j.properties::varchar <> 'null' as properties_not_object
            from parsed
        ),
        checked as (
            select *,
                case
                    when j is null and (line is null or trim(line) = '')
                        then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when has_non_finite then 'invalid_json|NaN or Infinity is not JSON'
                    when has_nul then 'invalid_value|NUL character (\\u0000) in a string'
                    {_event_rule_checks()}
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
        select file_path, event_id, event_type, schema_version_text as schema_version,
               occurred_at, received_at, j.user_id as user_id, j.device_id as device_id,
               j.platform as platform, j.app_version as app_version, j.country as country,
               j.playback_id as playback_id, j.title_id as title_id,
               position_s, duration_s, from_position_s, properties,
               {_verdict_columns()}
        from checked
        """,
    )


def _insert_events(con: duckdb.DuckDBPyConnection, load_id: str, loaded_at: datetime) -> None:
    """Insert valid events not seen before; the first received copy of an id wins.

    Repeated ids are rare, so only they are ranked: a window over every staged
    row would sort the whole chunk. ``_landed`` counts what each file added.
    """
    con.execute(
        f"""
        create or replace temp table _not_inserted as
        with valid as (
            select rowid as rid, event_id, received_at, file_path
            from _validated where reason_code is null
        ),
        repeated as (
            select event_id from valid group by event_id having count(*) > 1
        ),
        later_copies as (
            select rid from valid semi join repeated using (event_id)
            qualify row_number() over (
                partition by event_id order by received_at, file_path
            ) > 1
        ),
        loaded_before as (
            select rid from valid semi join {RAW_SCHEMA}.events e using (event_id)
        )
        select rid from later_copies union select rid from loaded_before
        """
    )
    inserted = con.execute(
        f"""
        insert into {RAW_SCHEMA}.events
        select v.event_id, v.event_type, v.schema_version, v.occurred_at, v.received_at,
               v.user_id, v.device_id, v.platform, v.app_version, v.country,
               v.playback_id, v.title_id, v.position_s, v.duration_s, v.from_position_s,
               v.properties, p.landing_date, v.file_path as source_file,
               $load_id as load_id, $loaded_at as loaded_at
        from _validated v
        join _batch_files p using (file_path)
        anti join _not_inserted n on n.rid = v.rowid
        where v.reason_code is null
        """,
        {"load_id": load_id, "loaded_at": loaded_at},
    ).fetchone()[0]
    con.execute(
        """
        create or replace temp table _landed as
        select v.file_path, count(*) - count(n.rid) as n
        from (select rowid as rid, file_path from _validated where reason_code is null) v
        left join _not_inserted n using (rid)
        group by all
        """
    )
    _check_landed(con, inserted)


def _check_landed(con: duckdb.DuckDBPyConnection, inserted: int) -> None:
    """The per-file counts must add up to the rows the insert reported (else roll back)."""
    counted = con.execute("select coalesce(sum(n), 0) from _landed").fetchone()[0]
    if counted != inserted:
        raise RuntimeError(f"load accounting: inserted {inserted} rows, counted {counted} per file")


def _title_integer_checks() -> str:
    return "\n                    ".join(reject_rules.title_integer_branches(reject_rules.DUCKDB))


def _validate_titles(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """As _validate_events, for catalog lines; the categories come from the seed, read now."""
    _create_validated(
        con,
        paths,
        f"""
        {_parsed_lines(_TITLE_STRUCT, _TITLE_STRINGS)},
        typed as (
            select *,
                   {_json_number("j.duration_s")} as duration_s,
                   try_cast(j.season::varchar as integer) as season,
                   try_cast(j.episode::varchar as integer) as episode,
                   try_cast(j.release_year::varchar as integer) as release_year,
                   try_cast(j.available_from as date) as available_from,
                   coalesce(j.is_available::varchar = 'true', true) as is_available,
                   try_cast(j.keywords as varchar[]) as keywords
            from parsed
        ),
        checked as (
            select *,
                case
                    when j is null and (line is null or trim(line) = '')
                        then 'empty_line|empty line'
                    when j is null and left(ltrim(line), 1) <> '{{' and json_valid(line)
                        then 'not_an_object|not a JSON object'
                    when j is null then 'invalid_json|unparsable JSON'
                    when has_non_finite then 'invalid_json|NaN or Infinity is not JSON'
                    when has_nul then 'invalid_value|NUL character (\\u0000) in a string'
                    when not_a_string is not null
                        then 'wrong_type|' || not_a_string || ' is not a string'
                    when j.title_id is null then 'missing_field|title_id'
                    when j.name is null then 'missing_field|name'
                    when j.category is null then 'missing_field|category'
                    when j.kind is null then 'missing_field|kind'
                    when j.duration_s is null then 'missing_field|duration_s'
                    when isnan(duration_s) or isinf(duration_s)
                        then 'wrong_type|duration_s is not a number'
                    when duration_s <= 0 then 'invalid_value|duration_s not positive'
                    when j.kind not in ('movie', 'episode')
                        then 'invalid_value|kind ' || to_json(left(j.kind, 50))
                    when not list_contains($categories, j.category)
                        then 'invalid_value|category ' || to_json(left(j.category, 50))
                             || ' is not one of seeds/{contract_rules.CATEGORIES_SEED}'
                    when j.kind = 'episode' and j.series_id is null
                        then 'missing_field|series_id'
                    when j.available_from is not null and available_from is null
                        then 'wrong_type|available_from is not a date'
                    when json_type(j.keywords) <> 'ARRAY'
                         or len(list_filter(json_type(j.keywords, '$[*]'),
                                            lambda t: t <> 'VARCHAR')) > 0
                        then 'wrong_type|keywords is not a list of strings'
                    {_title_integer_checks()}
                    when json_type(j.is_available) <> 'BOOLEAN'
                        then 'wrong_type|is_available is not a boolean'
                    -- present but null: no JSON null where the schema allows none
                    when (j.keywords is null or j.is_available is null)
                         and contains(line, 'null')
                         and list_contains(json_type(line, ['$.keywords', '$.is_available']),
                                           'NULL')
                        then 'wrong_type|' || if(json_type(line, '$.keywords') = 'NULL',
                                                 'keywords is not a list of strings',
                                                 'is_available is not a boolean')
                end as verdict
            from typed
        )
        select file_path, j.title_id as title_id, j.name as name, j.category as category,
               keywords, j.kind as kind, j.series_id as series_id, season, episode,
               duration_s, release_year, available_from, is_available,
               {_verdict_columns()}
        from checked
        """,
        {"categories": list(contract_rules.title_categories())},
    )


def _insert_titles(con: duckdb.DuckDBPyConnection, load_id: str, loaded_at: datetime) -> None:
    """Snapshots are kept whole; a title repeated within one file counts as a duplicate."""
    con.execute(
        f"""
        insert into {RAW_SCHEMA}.titles
        select v.title_id, v.name, v.category, v.keywords, v.kind, v.series_id,
               v.season, v.episode, v.duration_s, v.release_year, v.available_from,
               v.is_available, p.landing_date, v.file_path, $load_id, $loaded_at
        from _validated v join _batch_files p using (file_path)
        where v.reason_code is null
        qualify row_number() over (partition by v.file_path, v.title_id) = 1
        """,
        {"load_id": load_id, "loaded_at": loaded_at},
    )
    con.execute(
        f"""
        create or replace temp table _landed as
        select source_file as file_path, count(*) as n from {RAW_SCHEMA}.titles
        where load_id = $load_id and source_file in (select file_path from _batch_files)
        group by all
        """,
        {"load_id": load_id},
    )


def _write_manifest(
    con: duckdb.DuckDBPyConnection,
    results: list[FileResult],
    load_id: str,
    loaded_at: datetime,
) -> None:
    # Unreadable files stay out so a fixed re-delivery is loaded; files loaded
    # before have their row already.
    rows = [
        (
            load_id,
            r.path,
            r.kind,
            r.landing_date,
            r.size_bytes,
            r.sha256,
            r.status,
            r.lines_in,
            r.loaded,
            r.duplicates,
            r.rejected,
            loaded_at,
        )
        for r in results
        if r.status in ("loaded", "duplicate_file")
    ]
    if rows:
        con.executemany(
            f"insert into {RAW_SCHEMA}.load_manifest values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    # An unreadable file is recorded once per content with its reason.
    rejected = [
        (
            r.path,
            r.kind,
            r.landing_date,
            r.size_bytes,
            r.sha256,
            r.error or "unreadable",
            load_id,
            loaded_at,
        )
        for r in results
        if r.status == "unreadable"
    ]
    if rejected:
        con.executemany(
            f"""
            insert into {RAW_SCHEMA}.rejected_files
            select ?, ?, ?, ?, ?, ?, ?, ?
            where not exists (
                select 1 from {RAW_SCHEMA}.rejected_files where file_path = $1 and sha256 = $5
            )
            """,
            rejected,
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
