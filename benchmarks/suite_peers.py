"""The suite's peers: what the pipeline's stages are measured against, on the same data.

Each ``peer`` function runs inside a fresh child process (benchmarks.suite_child): DuckDB's
bare ``read_json`` and pandas ``read_json(lines=True)`` against the loader, a pandas
sessionization against dbt's ``int_sessions`` (results compared), the PostgreSQL mirror
the dbt-on-PostgreSQL peer builds from, the diff-based sync against
delete-everything-and-insert (results compared), and the empty warehouse under the
no-data floor. The two file helpers at the end prepare the pandas sample in the parent.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

from benchmarks.suite_stages import EXPORT_TABLES
from ottp import config


def read_json(files: list[str], db: str) -> dict:
    import duckdb

    con = duckdb.connect(db)
    con.execute(
        "create table events as select * from read_json($files, "
        "format = 'newline_delimited', ignore_errors = true)",
        {"files": files},
    )
    rows = con.execute("select count(*) from events").fetchall()[0][0]
    con.close()
    return {"items": rows}


def empty_warehouse(warehouse: str) -> dict:
    """A warehouse as the loader leaves it before its first file: raw tables, no rows."""
    from ottp.ingest import load
    from ottp.warehouse import connect

    con = connect(Path(warehouse))
    try:
        load.ensure_raw_schema(con)
    finally:
        con.close()
    return {"items": 0}


def pandas_load(files: list[str]) -> dict:
    import pandas as pd

    frames = [pd.read_json(f, lines=True, compression="gzip") for f in files]
    df = pd.concat(frames, ignore_index=True)
    return {"items": len(df), "columns": len(df.columns)}


def _activity_sql(where: str) -> str:
    """The events int_sessions reads (its three staging views), keyed by actor."""
    parts = [
        f"select coalesce(user_id, 'device:' || device_id) as actor_id, occurred_at "
        f"from staging.{view}"
        for view in ("stg_navigation_events", "stg_player_events", "stg_interest_events")
    ]
    return f"select * from ({' union all '.join(parts)}) as a where {where}"


def _session_gap_minutes() -> float:
    import yaml

    project = yaml.safe_load((config.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return float(project["vars"]["session_gap_minutes"])


def pandas_sessions(warehouse: str, modulus: int) -> dict:
    """The session rule written the way one would in pandas, on a sample of actors."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(warehouse, read_only=True)
    sample = "true" if modulus <= 1 else f"hash(actor_id) % {int(modulus)} = 0"
    total = con.execute(f"select count(*) from ({_activity_sql('true')})").fetchall()[0][0]
    t0 = time.perf_counter()
    df = con.sql(_activity_sql(sample)).df()
    read_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    gap = pd.Timedelta(minutes=_session_gap_minutes())
    df = df.sort_values(["actor_id", "occurred_at"], kind="stable", ignore_index=True)
    new_actor = df["actor_id"].ne(df["actor_id"].shift())
    starts = new_actor | (df["occurred_at"].diff() > gap)
    df["session"] = starts.cumsum()
    sessions = df.groupby("session", sort=False).agg(
        actor_id=("actor_id", "first"),
        started_at=("occurred_at", "min"),
        ended_at=("occurred_at", "max"),
        event_count=("occurred_at", "size"),
    )
    compute_s = time.perf_counter() - t0

    # The check: the same sessions (start, end, events) for every sampled actor.
    con.register("pandas_sessions", sessions.reset_index(drop=True))
    dbt_where = sample.replace("actor_id", "s.actor_id")
    diff = con.execute(
        f"""
        with d as (
            select actor_id, started_at, ended_at, event_count
            from intermediate.int_sessions as s where {dbt_where}
        ), p as (select actor_id, started_at, ended_at, event_count from pandas_sessions)
        select
            (select count(*) from d), (select count(*) from p),
            (select count(*) from (select * from d except all select * from p)),
            (select count(*) from (select * from p except all select * from d)),
            (select count(distinct actor_id) from p)
        """
    ).fetchall()[0]
    con.close()
    return {
        "items": len(df),
        "activity_events_total": total,
        "sample": f"1/{modulus} of actors" if modulus > 1 else "all actors",
        "read_s": round(read_s, 3),
        "compute_s": round(compute_s, 3),
        "sessions_dbt": diff[0],
        "sessions_pandas": diff[1],
        "only_in_dbt": diff[2],
        "only_in_pandas": diff[3],
        "actors": diff[4],
        "equal": diff[2] == 0 and diff[3] == 0 and diff[0] == diff[1],
    }


def mirror_to_postgres(warehouse: str, dsn: str) -> dict:
    from ottp.ingest import pg_mirror

    copied = pg_mirror.mirror_raw_to_postgres(Path(warehouse), dsn)
    return {"items": sum(copied.values()), "rows": copied}


_CHANGE_ONE_PERCENT = """
update exports.crm_contacts set churn_risk = 1 - coalesce(churn_risk, 0)
    where hash(user_id) % 300 = 0;
delete from exports.crm_contacts where hash(user_id) % 300 = 1;
insert into exports.crm_contacts
    select * replace ('n' || user_id as user_id) from exports.crm_contacts
    where hash(user_id) % 300 = 2;
delete from exports.crm_recommendations where hash(user_id) % 300 = 1;
insert into exports.crm_recommendations
    select * replace ('n' || user_id as user_id) from exports.crm_recommendations
    where hash(user_id) % 300 = 2;
update exports.crm_recommendations set title_id = title_id || '_x'
    where hash(user_id, rank) % 300 = 3;
"""


def sync_peer(warehouse: str, folder: str) -> dict:
    """Re-sync after a 1 % change: the diff-based sync against delete-all-and-insert.

    Runs on a copy of the export tables (the warehouse is not changed). Both
    targets start from the same first sync and must end with the same rows.
    """
    import sqlite3

    import duckdb

    from ottp.crm import sync
    from ottp.crm.targets import SqliteTarget

    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = root / "peer_source.duckdb"  # not "exports": the schema's name
    _copy_exports(warehouse, source)

    diff_target = SqliteTarget(root / "diff.sqlite")
    first = sync.sync(diff_target, warehouse_path=source, state_dir=root / "state")
    shutil.copyfile(root / "diff.sqlite", root / "replace.sqlite")

    from benchmarks.bench_sync import add_row_hashes

    con = duckdb.connect(str(source))
    con.execute(_CHANGE_ONE_PERCENT)
    add_row_hashes(con)  # what the next dbt build of the export models does
    con.close()

    t0 = time.perf_counter()
    again = sync.sync(diff_target, warehouse_path=source, state_dir=root / "state")
    diff_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    lite = sqlite3.connect(root / "replace.sqlite", isolation_level=None)
    rows = _delete_and_insert(source, lite)
    replace_s = time.perf_counter() - t0
    mismatches = _mismatched_rows(lite, root / "diff.sqlite")
    lite.close()
    return {
        "items": rows,
        "first_sync_s": round(first.seconds, 3),
        "diff_resync_s": round(diff_s, 3),
        "delete_insert_s": round(replace_s, 3),
        "changed_rows": again.changes,
        "source_rows": again.total("source_rows"),
        "mismatched_rows": mismatches,
        "equal": not any(mismatches.values()),
    }


def _copy_exports(warehouse: str, source: Path) -> None:
    """The export tables (and the lifecycle mart the sync reads) copied into ``source``."""
    import duckdb

    con = duckdb.connect(str(source))
    con.execute(f"attach '{warehouse}' as wh (read_only)")
    con.execute("create schema exports; create schema marts")
    for t in EXPORT_TABLES:
        con.execute(f"create table exports.{t} as select * from wh.exports.{t}")
    con.execute("create table marts.user_lifecycle as select * from wh.marts.user_lifecycle")
    con.execute("detach wh")
    con.close()


def _delete_and_insert(source: Path, lite) -> int:
    """The peer: one transaction, every table emptied and refilled from the source."""
    import duckdb

    from ottp.crm.contract import TABLES

    duck = duckdb.connect(str(source), read_only=True)
    lite.execute("begin immediate")
    rows = 0
    for spec in TABLES:
        names = spec.column_names
        cols = ", ".join(
            f'cast("{c.name}" as varchar)' if c.type == "timestamp" else f'"{c.name}"'
            for c in spec.columns
        )
        marks = ", ".join("?" for _ in names)  # the row hash is the contract's last column
        lite.execute(f'delete from "{spec.name}"')
        cur = duck.execute(f"select {cols} from exports.{spec.name}")
        while batch := cur.fetchmany(100_000):
            lite.executemany(f'insert into "{spec.name}" values ({marks})', batch)
            rows += len(batch)
    lite.execute("commit")
    duck.close()
    return rows


def _mismatched_rows(lite, diff_path: Path) -> dict[str, int]:
    """The check: the same contract columns in both targets (rows in one and not the other)."""
    from ottp.crm.contract import TABLES

    lite.execute(f"attach '{diff_path}' as d")
    mismatches = {}
    for spec in TABLES:
        cols = ", ".join(f'"{c}"' for c in spec.column_names)
        a = f'select {cols} from main."{spec.name}"'
        b = f'select {cols} from d."{spec.name}"'
        n = lite.execute(
            f"select (select count(*) from ({a} except {b})) "
            f"+ (select count(*) from ({b} except {a}))"
        ).fetchall()[0][0]
        mismatches[spec.name] = n
    return mismatches


def pick_sample(files: list[Path], max_lines: int, lines_per_byte: float) -> list[Path]:
    """Files spread over the whole window, up to about max_lines lines."""
    total = sum(f.stat().st_size for f in files)
    if total * lines_per_byte <= max_lines:
        return files
    keep = max(1, int(len(files) * max_lines / (total * lines_per_byte)))
    step = len(files) / keep
    return [files[int(i * step)] for i in range(keep)]


def clean_copy(files: list[Path], folder: Path) -> tuple[list[str], int, int]:
    """Copies holding only the lines that are JSON objects (pandas stops at the first bad line)."""
    folder.mkdir(parents=True, exist_ok=True)
    out, kept, dropped = [], 0, 0
    for i, src in enumerate(files):
        dst = folder / f"part-{i:05d}.ndjson.gz"
        with gzip.open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=1) as fout:
            for line in fin:
                try:
                    ok = isinstance(json.loads(line), dict)
                except ValueError:
                    ok = False
                if ok:
                    fout.write(line if line.endswith(b"\n") else line + b"\n")
                    kept += 1
                else:
                    dropped += 1
        out.append(str(dst))
    return out, kept, dropped
