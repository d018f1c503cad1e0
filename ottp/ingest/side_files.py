"""What the real-time server lands beside the events, loaded once per file and per key.

The live triggers (``landing/triggers/``) and the identify calls
(``landing/identities/``) share one loader: every closed file not loaded yet, in
one transaction; each line checked by the kind's SQL (its reason code, or its
columns); the first copy of each key inserted, the rest counted as duplicates;
rejected lines kept with their reason; each file recorded with
``lines = loaded + duplicates + rejected``. A file's bytes after its last complete
gzip member count as one rejected line (``damaged_gzip``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ottp.realtime.landing_writer import salvage
from ottp.warehouse import LOCK_WAIT_S, connect


@dataclass(frozen=True)
class SideFiles:
    """One kind of landed file: its folder, tables, line checks and the row it inserts."""

    kind: str  # the landing folder
    ddl: str  # creates the three tables below if missing
    checked: str  # select over $lines: line_number, reason_code, reason and the columns
    table: str  # the loaded rows
    key: str  # one row per key in ``table``
    insert_columns: str  # select list from ``checked`` (the file name is the last ``?``)
    rejected_table: str  # file, line_number, reason_code, reason, loaded_at
    files_table: str  # file, path, sha256, lines, loaded, duplicates, rejected, loaded_at


@dataclass
class SideFileReport:
    """What one load did, in total."""

    files_loaded: int = 0
    files_skipped: int = 0
    lines: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.lines == self.loaded + self.duplicates + self.rejected


def discover(landing_dir: Path, kind: str) -> list[Path]:
    """The closed files of ``kind`` (an open one ends ``.open`` and is read once closed)."""
    root = Path(landing_dir) / kind
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("date=*/*") if p.is_file() and p.name.endswith(".ndjson.gz"))


def file_lines(data: bytes) -> tuple[list[str], bool]:
    """The lines of the file's complete gzip members (and the whole lines of a cut one);
    True when bytes were left over (a damaged or cut file)."""
    good, tail = salvage(data)
    text = b""
    if good:
        text = gzip.decompress(data[:good])
    lines = (text + tail).decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's end
    return lines, good != len(data)


def load(
    spec: SideFiles, warehouse_path: Path, landing_dir: Path, wait_s: float = LOCK_WAIT_S
) -> SideFileReport:
    """Load every file of ``spec`` not loaded yet; one transaction for the whole run."""
    report = SideFileReport()
    con = connect(warehouse_path, wait_s=wait_s)
    try:
        con.execute(spec.ddl)
        known = {r[0] for r in con.execute(f"select file_name from {spec.files_table}").fetchall()}
        con.execute("begin transaction")
        for path in discover(landing_dir, spec.kind):
            name = f"{path.parent.name}/{path.name}"
            if name in known:
                report.files_skipped += 1
                continue
            _load_file(con, spec, path, name, report)
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")  # nothing of this run stays; the next run redoes it
        raise
    finally:
        con.close()
    return report


def _load_file(
    con: duckdb.DuckDBPyConnection, spec: SideFiles, path: Path, name: str, report: SideFileReport
) -> None:
    data = path.read_bytes()
    lines, damaged = file_lines(data)
    con.execute(f"create or replace temp table checked as {spec.checked}", {"lines": lines})
    con.execute(
        f"insert into {spec.rejected_table} select ?, line_number, reason_code, reason, now() "
        "from checked where reason_code is not null",
        [name],
    )
    loaded = con.execute(
        f"""
        insert into {spec.table}
        select {spec.insert_columns}
        from checked
        where reason_code is null and {spec.key} not in (select {spec.key} from {spec.table})
        qualify row_number() over (partition by {spec.key} order by line_number) = 1
        """,
        [name],
    ).fetchall()[0][0]
    by_reason = dict(
        con.execute(
            "select reason_code, count(*) from checked where reason_code is not null group by 1"
        ).fetchall()
    )
    lines_n = len(lines)
    dupes = lines_n - loaded - sum(by_reason.values())
    if damaged:
        # what follows the last whole line cannot be read: one rejected row, counted as a line
        lines_n += 1
        by_reason["damaged_gzip"] = by_reason.get("damaged_gzip", 0) + 1
        con.execute(
            f"insert into {spec.rejected_table} values (?, ?, 'damaged_gzip', "
            "'damaged_gzip: bytes after the last complete line do not decompress', now())",
            [name, lines_n],
        )
    rejected = sum(by_reason.values())
    for code, n in by_reason.items():
        report.rejected_by_reason[code] = report.rejected_by_reason.get(code, 0) + n
    con.execute(
        f"insert into {spec.files_table} values (?, ?, ?, ?, ?, ?, ?, now())",
        [name, str(path), hashlib.sha256(data).hexdigest(), lines_n, loaded, dupes, rejected],
    )
    report.files_loaded += 1
    report.lines += lines_n
    report.loaded += loaded
    report.duplicates += dupes
    report.rejected += rejected
