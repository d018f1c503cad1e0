"""Exactly-once loading of landing files into the warehouse's raw schema.

Every line of every file ends up in exactly one place: ``raw.events`` (or
``raw.titles``), counted as a duplicate, or ``raw.rejected_events`` (or
``raw.rejected_titles``) with a reason; a Segment/RudderStack call that maps to
no contract event (``identify``...) is counted as skipped. A load is one DuckDB transaction: a
crash part-way leaves the previous state and the next run redoes the files.

The per-line work (splitting, JSON parsing, validation, deduplication) runs
in DuckDB; Python only lists files, hashes them and issues statements. This
module runs a load: chunks of files, each one transaction that inserts the
valid lines (deduplicated), the rejected ones and the manifest rows, and
counts every file. The gzip check is ``gzip_check``, the line verdicts
``validate``, the raw tables and the manifest ``manifest``; event files in
Segment/RudderStack export format (``landing/segment/``) are mapped onto the
contract by ``segment_files`` before the same validation.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from ottp.config import RAW_SCHEMA
from ottp.contract import rules as contract_rules
from ottp.ingest import landing, segment_files
from ottp.ingest.gzip_check import inspect_file, without_cr
from ottp.ingest.manifest import (
    FileResult,
    LoadReport,
    ensure_raw_schema,
    skip_known_files,
    write_manifest,
)
from ottp.ingest.validate import MAX_LINE_BYTES, reader, validate_events, validate_titles
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
# Input per transaction (gzip bytes): bounds memory, see docs/benchmarks.md.
CHUNK_BYTES = 128 << 20
# Landing file kind -> (table written, table of rejected lines).
_TABLES = {"events": ("events", "rejected_events"), "catalog": ("titles", "rejected_titles")}


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
        pending = skip_known_files(con, files, report)
        pending, with_cr = _drop_corrupt_files(pending, report)
        # What the reader reads instead of a file that holds a CR.
        read_paths = {}
        for i, path in enumerate(sorted(with_cr)):
            read_paths[path] = str(Path(scratch.name) / f"{i}.ndjson.gz")
            without_cr(Path(path), Path(read_paths[path]))
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        _commit(con, lambda: write_manifest(con, report.files, report.load_id, loaded_at))
        for kind in landing.FILE_KINDS:
            for chunk in _chunks([p for p in pending if p[0].kind == kind], chunk_bytes):
                # Reading and validating fill temp tables only, outside the
                # transaction: a file that cannot be read must not abort it.
                before = len(report.files)
                readable = _stage(con, kind, chunk, report, read_paths)

                def write(kind=kind, readable=readable, before=before) -> None:
                    _write(con, kind, readable, report, loaded_at)
                    write_manifest(con, report.files[before:], report.load_id, loaded_at)

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

    def run(files: list[tuple[landing.LandingFile, str]]) -> None:
        _set_batch_files(con, files)
        paths = {fmt: [] for fmt in (landing.NATIVE, landing.SEGMENT)}
        for f, _ in files:
            paths[f.format].append(read_paths.get(str(f.path), str(f.path)))
        if kind == "events":
            validate_events(con, paths[landing.NATIVE], paths[landing.SEGMENT])
        else:
            validate_titles(con, paths[landing.NATIVE])
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
            con.execute(f"select count(*) from {reader()}", {"paths": [path]})
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
    for table in ("_validated", "_line_rejects", "_skipped_lines"):
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
        skipped as (
            select file_path, sum(n) as n from _skipped_lines group by all
        ),
        rejected as (
            select source_file as file_path, count(*) as n from {RAW_SCHEMA}.{reject_table}
            where load_id = $load_id and source_file in (select file_path from _batch_files)
            group by all
        )
        select f.file_path,
               coalesce(r.n, 0) + coalesce(x.n, 0) + coalesce(k.n, 0),
               coalesce(l.n, 0),
               coalesce(r.valid, 0),
               coalesce(j.n, 0),
               coalesce(k.n, 0)
        from _batch_files f
        left join read_in r using (file_path)
        left join refused x using (file_path)
        left join landed l using (file_path)
        left join rejected j using (file_path)
        left join skipped k using (file_path)
        """,
        {"load_id": report.load_id},
    ).fetchall()
    counts = {r[0]: r[1:] for r in rows}
    skipped_in_chunk = 0
    for f, sha in readable:
        lines_in, loaded, valid, rejected, skipped = counts[str(f.path)]
        skipped_in_chunk += skipped
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
                skipped=skipped,
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
    if skipped_in_chunk:
        code = segment_files.NO_CONTRACT_EVENT
        report.skipped_by_reason[code] = report.skipped_by_reason.get(code, 0) + skipped_in_chunk


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


def reconciliation(warehouse_path: Path) -> dict:
    """Totals over the whole manifest, with the reconciliation recomputed from the tables."""
    con = connect(warehouse_path)
    try:
        manifest = con.execute(
            f"""
            select coalesce(sum(lines_in), 0), coalesce(sum(loaded), 0),
                   coalesce(sum(duplicates), 0), coalesce(sum(rejected), 0),
                   count(*) filter (where status = 'loaded'), coalesce(sum(skipped), 0)
            from {RAW_SCHEMA}.load_manifest where file_kind = 'events'
            """
        ).fetchone()
        events, rejected = con.execute(
            f"select (select count(*) from {RAW_SCHEMA}.events), "
            f"(select count(*) from {RAW_SCHEMA}.rejected_events)"
        ).fetchone()
    finally:
        con.close()
    lines_in, loaded, duplicates, manifest_rejected, files, skipped = manifest
    return {
        "event_files": files,
        "lines_in": lines_in,
        "events_loaded": loaded,
        "duplicates": duplicates,
        "rejected": manifest_rejected,
        "skipped": skipped,
        "events_in_table": events,
        "rejected_in_table": rejected,
        "reconciles": lines_in == loaded + duplicates + manifest_rejected + skipped
        and events == loaded
        and rejected == manifest_rejected,
    }
