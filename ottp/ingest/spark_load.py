"""Exactly-once loading of landing files into Spark's raw tables (Parquet).

The Spark counterpart of :mod:`ottp.ingest.load`, with the same contract: every line
of every file ends up in ``raw.events`` (or ``raw.titles``), counted as a
duplicate, or in ``raw.rejected_events`` (``raw.rejected_titles``) with the
same reason codes; files are known by SHA-256 in ``raw.load_manifest``; a
re-delivered file under another name counts all its lines as duplicates; a
corrupt gzip file is reported unreadable and stays out of the manifest.
Event files in Segment/RudderStack export format (``landing/segment/``) are
not read here: each is reported unreadable with the reason (``SEGMENT_REFUSED``)
and stays out of the manifest; ``ottp load`` (DuckDB) loads them.

Spark reads the files itself (``spark.read.text``, gzip included) and does the
parsing, validation (``ottp.ingest.spark_validate``) and deduplication in SQL;
Python lists and hashes files.

Parquet has no multi-table transaction, so a load is made atomic another way:
every raw table is partitioned by ``load_id`` and the manifest rows, written
last in one file, are the commit. A load that stopped before them leaves
partitions no manifest row names; the next load drops those partitions first
and loads the files again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ottp.config import RAW_SCHEMA
from ottp.contract import rules as contract_rules
from ottp.ingest import landing, spark_validate
from ottp.ingest.gzip_check import inspect_file
from ottp.ingest.manifest import FileResult, LoadReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RAW_DDL = (
    f"create database if not exists {RAW_SCHEMA}",
    f"""create table if not exists {RAW_SCHEMA}.events (
        event_id string, event_type string, schema_version string,
        occurred_at timestamp, received_at timestamp, user_id string,
        device_id string, platform string, app_version string, country string,
        playback_id string, title_id string, position_s double, duration_s double,
        from_position_s double, properties string, landing_date date,
        source_file string, loaded_at timestamp, load_id string
    ) using parquet partitioned by (load_id)""",
    f"""create table if not exists {RAW_SCHEMA}.titles (
        title_id string, name string, category string, keywords array<string>,
        kind string, series_id string, season int, episode int, duration_s double,
        release_year int, available_from date, is_available boolean,
        snapshot_date date, source_file string, loaded_at timestamp, load_id string
    ) using parquet partitioned by (load_id)""",
    *(
        f"""create table if not exists {RAW_SCHEMA}.{table} (
            source_file string, line_number bigint, raw_line string,
            reason_code string, reason string, landing_date date,
            rejected_at timestamp, load_id string
        ) using parquet partitioned by (load_id)"""
        for table in ("rejected_events", "rejected_titles")
    ),
    f"""create table if not exists {RAW_SCHEMA}.load_manifest (
        load_id string, file_path string, file_kind string, landing_date date,
        size_bytes bigint, sha256 string, status string, lines_in bigint,
        loaded bigint, duplicates bigint, rejected bigint, loaded_at timestamp
    ) using parquet""",
    # Written by the deletion pass (ottp/privacy.py) on DuckDB; the exports read it.
    f"""create table if not exists {RAW_SCHEMA}.deleted_users (
        user_id string, pseudonym string, deleted_at timestamp
    ) using parquet""",
)
_PARTITIONED = ("events", "titles", "rejected_events", "rejected_titles")
SEGMENT_REFUSED = (
    "Segment/RudderStack export file: the Spark loader reads contract events only; "
    "load it with `ottp load`"
)
_TABLES = {"events": ("events", "rejected_events"), "catalog": ("titles", "rejected_titles")}


def ensure_raw_schema(spark: SparkSession) -> None:
    for statement in RAW_DDL:
        spark.sql(statement)


def load_landing(spark: SparkSession, landing_dir: Path, day: date | None = None) -> LoadReport:
    """Load every landing file (of one day, if given) that is not loaded yet."""
    return load_files(spark, landing.discover(landing_dir, day))


def load_files(spark: SparkSession, files: Sequence[landing.LandingFile]) -> LoadReport:
    """Load the given files into Spark's raw tables; files already loaded are skipped."""
    started = time.perf_counter()
    report = LoadReport(load_id=uuid.uuid4().hex)
    ensure_raw_schema(spark)
    _drop_uncommitted_loads(spark)
    files = refuse_segment_files(files, report)
    pending = _skip_known_files(spark, files, report)
    pending = _drop_corrupt_files(pending, report)
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    for kind in landing.FILE_KINDS:
        batch = [item for item in pending if item[0].kind == kind]
        if batch:
            _load_kind(spark, kind, batch, report, loaded_at)
    _write_manifest(spark, report, loaded_at)
    report.seconds = time.perf_counter() - started
    return report


def refuse_segment_files(
    files: Sequence[landing.LandingFile], report: LoadReport
) -> list[landing.LandingFile]:
    """The native files; each Segment/RudderStack export file is reported unreadable."""
    for f in files:
        if f.format != landing.NATIVE:
            report.files.append(
                FileResult(
                    str(f.path),
                    f.kind,
                    f.partition_date,
                    "unreadable",
                    error=SEGMENT_REFUSED,
                    size_bytes=f.size_bytes,
                )
            )
    return [f for f in files if f.format == landing.NATIVE]


def _drop_uncommitted_loads(spark: SparkSession) -> None:
    """Drop the partitions of loads that never wrote their manifest rows."""
    manifest = spark.sql(f"select distinct load_id from {RAW_SCHEMA}.load_manifest")
    committed = {r[0] for r in manifest.collect()}
    for table in _PARTITIONED:
        for row in spark.sql(f"show partitions {RAW_SCHEMA}.{table}").collect():
            load_id = row[0].split("=", 1)[1]
            if load_id not in committed:
                # load ids are hex uuids we generated: safe to inline
                spark.sql(
                    f"alter table {RAW_SCHEMA}.{table} drop if exists "
                    f"partition (load_id = '{_hex(load_id)}')"
                )


def _hex(value: str) -> str:
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a load id: {value!r}")
    return value


def _skip_known_files(
    spark: SparkSession, files: Sequence[landing.LandingFile], report: LoadReport
) -> list[tuple[landing.LandingFile, str]]:
    """Drop files whose content was loaded before, under this path or another."""
    known = {
        r.sha256: (r.file_path, r.lines_in)
        for r in spark.sql(
            f"select file_path, sha256, lines_in from {RAW_SCHEMA}.load_manifest "
            "where status = 'loaded'"
        ).collect()
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


def _drop_corrupt_files(
    pending: list[tuple[landing.LandingFile, str]], report: LoadReport
) -> list[tuple[landing.LandingFile, str]]:
    """Check gzip integrity first: Spark's reader fails the whole job on one bad file."""
    if not pending:
        return pending
    with ThreadPoolExecutor(min(8, len(pending))) as pool:
        problems = list(pool.map(lambda item: inspect_file(item[0].path)[0], pending))
    sound = []
    for (f, sha), problem in zip(pending, problems, strict=True):
        if problem is None:
            sound.append((f, sha))
        else:
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
    return sound


def _lines(spark: SparkSession, batch: list[tuple[landing.LandingFile, str]]) -> DataFrame:
    """Every line with its file, landing day and line number, in one read of the files.

    Each file gets a task of its own (the open cost of a file is set above any
    split size), so a gzip file's line number is its row's place in the task.
    Plain files may be split across tasks; their line numbers are left null.
    """
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.files.openCostInBytes", str(1 << 40))
    files = spark.createDataFrame(
        [(str(f.path), f.partition_date, str(f.path).endswith(".gz")) for f, _ in batch],
        "file_path string, landing_date date, is_gzip boolean",
    )
    lines = spark.read.text([str(f.path) for f, _ in batch]).select(
        F.col("value").alias("line"),
        # Spark names a file by its URI; decode it back to the path ("+" stays "+")
        F.expr(
            "url_decode(replace(regexp_replace(_metadata.file_path, '^file:(//)?', ''), "
            "'+', '%2B'))"
        ).alias("file_path"),
        (
            F.monotonically_increasing_id()
            - F.shiftleft(F.spark_partition_id().cast("long"), 33)
            + 1
        ).alias("row_in_file"),
    )
    return lines.join(F.broadcast(files), "file_path").select(
        "file_path",
        "landing_date",
        F.when(F.col("is_gzip"), F.col("row_in_file")).alias("line_number"),
        "line",
    )


def _load_kind(
    spark: SparkSession,
    kind: str,
    batch: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
    loaded_at: datetime,
) -> None:
    from pyspark.sql import functions as F

    table, reject_table = _TABLES[kind]
    _lines(spark, batch).createOrReplaceTempView("_spark_lines")
    if kind == "events":
        validated = spark.sql(spark_validate.validated_events_sql())
    else:
        # the categories seed, read now, bound as an array parameter
        categories = list(contract_rules.title_categories())
        validated = spark.sql(
            spark_validate.validated_titles_sql(), args={"categories": categories}
        )
    validated = validated.withColumn("loaded_at", F.lit(loaded_at))
    # Read once: the inserts, the rejects and the counts all come from it.
    validated = validated.persist()
    validated.createOrReplaceTempView("_spark_validated")
    load_id = _hex(report.load_id)
    try:
        _insert_valid(spark, kind, load_id)
        spark.sql(
            f"""
            insert into {RAW_SCHEMA}.{reject_table} partition (load_id = '{load_id}')
            select file_path, line_number, raw_line, reason_code, reason, landing_date,
                   loaded_at as rejected_at
            from _spark_validated
            where reason_code is not null
            """
        )
        _count_files(spark, table, load_id, batch, report)
    finally:
        validated.unpersist()


def _insert_valid(spark: SparkSession, kind: str, load_id: str) -> None:
    """Insert the valid lines of ``_spark_validated``: events new by id, titles once per file."""
    if kind == "events":
        spark.sql(
            f"""
            insert into {RAW_SCHEMA}.events partition (load_id = '{load_id}')
            select event_id, event_type, schema_version, occurred_at, received_at,
                   user_id, device_id, platform, app_version, country, playback_id,
                   title_id, position_s, duration_s, from_position_s, properties,
                   landing_date, source_file, loaded_at
            from (
                select v.*, v.file_path as source_file,
                       row_number() over (
                           partition by v.event_id order by v.received_at, v.file_path
                       ) as copy_rank
                from _spark_validated as v
                left anti join {RAW_SCHEMA}.events as e on e.event_id = v.event_id
                where v.reason_code is null
            ) as fresh
            where copy_rank = 1
            """
        )
    else:
        spark.sql(
            f"""
            insert into {RAW_SCHEMA}.titles partition (load_id = '{load_id}')
            select title_id, name, category, keywords, kind, series_id, season,
                   episode, duration_s, release_year, available_from, is_available,
                   landing_date as snapshot_date, file_path as source_file, loaded_at
            from (
                select *, row_number() over (
                    partition by file_path, title_id order by line_number
                ) as copy_rank
                from _spark_validated
                where reason_code is null
            ) as fresh
            where copy_rank = 1
            """
        )


def _count_files(
    spark: SparkSession,
    table: str,
    load_id: str,
    batch: list[tuple[landing.LandingFile, str]],
    report: LoadReport,
) -> None:
    """Per-file counts, from ``_spark_validated`` and the rows this load inserted."""
    counts = {
        r.file_path: r
        for r in spark.sql(
            f"""
            select lines.file_path, lines.lines_in, lines.rejected,
                   coalesce(inserted.loaded, 0) as loaded
            from (
                select file_path, count(*) as lines_in,
                       count(reason_code) as rejected
                from _spark_validated group by file_path
            ) as lines
            left join (
                select source_file, count(*) as loaded
                from {RAW_SCHEMA}.{table} where load_id = '{load_id}'
                group by source_file
            ) as inserted on lines.file_path = inserted.source_file
            """
        ).collect()
    }
    for reason, n in spark.sql(
        "select reason_code, count(*) from _spark_validated "
        "where reason_code is not null group by reason_code"
    ).collect():
        report.rejected_by_reason[reason] = report.rejected_by_reason.get(reason, 0) + n
    for f, sha in batch:
        row = counts.get(str(f.path))
        lines_in, rejected, loaded = (row.lines_in, row.rejected, row.loaded) if row else (0, 0, 0)
        report.files.append(
            FileResult(
                str(f.path),
                f.kind,
                f.partition_date,
                "loaded",
                lines_in=lines_in,
                loaded=loaded,
                rejected=rejected,
                duplicates=lines_in - loaded - rejected,
                sha256=sha,
                size_bytes=f.size_bytes,
            )
        )


def _write_manifest(spark: SparkSession, report: LoadReport, loaded_at: datetime) -> None:
    """The commit of the load: its manifest rows, in one file."""
    rows = [
        (
            report.load_id,
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
        for r in report.files
        if r.status in ("loaded", "duplicate_file")
    ]
    if not rows:
        return
    schema = spark.table(f"{RAW_SCHEMA}.load_manifest").schema
    spark.createDataFrame(rows, schema).coalesce(1).write.insertInto(f"{RAW_SCHEMA}.load_manifest")


def reconciliation(spark: SparkSession) -> dict:
    """Totals over the manifest, with the reconciliation recomputed from the tables."""
    m = spark.sql(
        f"""
        select coalesce(sum(lines_in), 0) as lines_in, coalesce(sum(loaded), 0) as loaded,
               coalesce(sum(duplicates), 0) as duplicates,
               coalesce(sum(rejected), 0) as rejected,
               count(case when status = 'loaded' then 1 end) as files
        from {RAW_SCHEMA}.load_manifest where file_kind = 'events'
        """
    ).first()
    events = spark.table(f"{RAW_SCHEMA}.events").count()
    rejected = spark.table(f"{RAW_SCHEMA}.rejected_events").count()
    return {
        "event_files": m.files,
        "lines_in": m.lines_in,
        "events_loaded": m.loaded,
        "duplicates": m.duplicates,
        "rejected": m.rejected,
        "events_in_table": events,
        "rejected_in_table": rejected,
        "reconciles": m.lines_in == m.loaded + m.duplicates + m.rejected
        and events == m.loaded
        and rejected == m.rejected,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ottp.ingest.spark_load [--landing DIR] [--day YYYY-MM-DD] [--json]``."""
    import argparse
    import json

    from ottp.config import settings
    from ottp.spark import session

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--landing", type=Path)
    parser.add_argument("--day", type=date.fromisoformat)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    s = settings()
    spark = session("ottp-spark-load", s)
    report = load_landing(spark, args.landing or s.landing_dir, args.day)
    print(json.dumps(report.to_dict(), default=str) if args.json else report.format_table())
    return 0 if report.reconciles else 1


if __name__ == "__main__":
    raise SystemExit(main())
