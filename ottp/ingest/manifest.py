"""The raw schema's tables and the loader's bookkeeping of files.

The DDL of ``raw`` (events, titles, their rejects, the load manifest, rejected
files); what one load did to each file (:class:`FileResult`, :class:`LoadReport`);
which files are known by content (SHA-256) already; the manifest and
rejected-file rows a load writes in its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb

from ottp.config import RAW_SCHEMA
from ottp.ingest import landing

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
    loaded_at timestamp not null,
    skipped bigint not null default 0
);
-- a warehouse made before the column: calls skipped as no_contract_event (Segment files)
alter table {RAW_SCHEMA}.load_manifest add column if not exists skipped bigint default 0;
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(RAW_DDL)


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
    skipped: int = 0  # tracking calls without a contract event (Segment files)
    error: str | None = None
    sha256: str | None = None
    size_bytes: int = 0

    @property
    def reconciles(self) -> bool:
        return self.lines_in == self.loaded + self.duplicates + self.rejected + self.skipped


@dataclass
class LoadReport:
    load_id: str
    files: list[FileResult] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
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
    def skipped(self) -> int:
        return self._sum("skipped")

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
            "skipped": self.skipped,
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
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
        if self.skipped_by_reason:
            lines.append(
                "skipped (no contract event) by reason: "
                + ", ".join(f"{k}={v:,}" for k, v in sorted(self.skipped_by_reason.items()))
            )
        verdict = "holds" if self.reconciles else "DOES NOT HOLD"
        skipped = " + skipped" if self.skipped else ""
        lines.append(
            f"reconciliation lines_in = loaded + duplicates + rejected{skipped}: {verdict}"
        )
        return "\n".join(lines)


def skip_known_files(
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


def write_manifest(
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
            r.skipped,
        )
        for r in results
        if r.status in ("loaded", "duplicate_file")
    ]
    if rows:
        con.executemany(
            f"insert into {RAW_SCHEMA}.load_manifest values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
