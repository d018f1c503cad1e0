"""CRM sync benchmark: a first sync and a 1 % change re-sync, embedded and PostgreSQL.

    .venv/bin/python benchmarks/bench_sync.py                 # 1M contacts, 10M recommendations
    .venv/bin/python benchmarks/bench_sync.py --contacts 100000 --targets sqlite
    .venv/bin/python benchmarks/bench_sync.py --contacts 200000 --targets postgresql --repeat 3

A synthetic warehouse holds the four export tables (recommendations: 10 per
contact) with their row hashes, computed with the export models' expression
(``ottp.crm.contract.row_hash_sql``; timed apart: dbt does that work, not the
sync). The change set touches 1 % of the rows of each user-level table: a third
updated, a third deleted, a third inserted; the row hashes are then computed
again, as the next dbt build would. Targets: the re-sync costs at most 15 % of
the first sync, and both finish under 60 s on PostgreSQL. ``--repeat`` runs
each target that many times and reports the medians. Results are printed and
written to bench-results/bench_sync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ottp import config  # noqa: E402
from ottp.crm import contract, sync, targets  # noqa: E402

PG_URL = config.bench_postgres_url() or "postgresql://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "bench_crm_sync"


def build(path: Path, contacts: int, recs_per_contact: int) -> float:
    """The four export tables; returns the seconds spent on their row hashes."""
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists exports; create schema if not exists marts")
    con.execute(
        "create or replace table marts.user_lifecycle as "
        "select timestamp '2026-09-30 12:00:00' as as_of_at"
    )
    con.execute(
        f"""
        create or replace table exports.crm_contacts as
        select 'u_' || lpad(i::varchar, 8, '0') as user_id,
            ['new', 'active', 'at_risk', 'churned', 'reactivated'][1 + i % 5] as lifecycle_stage,
            ['active', 'cancelled', 'none'][1 + i % 3] as subscription_status,
            ['hardcore_fan', 'fan', 'casual', 'non_viewer'][1 + i % 4] as highest_segment,
            'drama,kids' as fan_categories, case when i % 7 = 0 then 'drama' end
                as hardcore_fan_categories,
            'drama' as top_category, 'drama,kids,comedy' as top_categories,
            (i % 12)::integer as taste_cluster_id, 'Drama & Kids' as taste_cluster_name,
            (i % 100) / 100.0 as churn_risk,
            ['low', 'medium', 'high'][1 + i % 3] as churn_risk_band,
            't_' || (i % 20000) as favourite_title_id, 'Title ' || (i % 20000)
                as favourite_title_name,
            i % 300 as titles_watched, i % 900 as valid_play_count, i % 4 as fan_category_count,
            i % 2 as hardcore_fan_category_count, {recs_per_contact} as recommendation_count,
            (i % 40) / 10.0 as pauses_per_hour_watched,
            timestamp '2025-01-01' + to_seconds(i * 17) as signed_up_at,
            timestamp '2026-09-01' + to_seconds(i % 2500000) as last_active_at
        from range({contacts}) as t(i)
        """
    )
    con.execute(
        f"""
        create or replace table exports.crm_recommendations as
        select 'u_' || lpad((i // {recs_per_contact})::varchar, 8, '0') as user_id,
            (i % {recs_per_contact} + 1)::integer as rank,
            -- distinct titles within a user's list
            't_' || ((i // {recs_per_contact}) * 7 + i % {recs_per_contact}) % 20000 as title_id,
            'Title ' || (i % 20000) as title_name,
            1.0 / (i % {recs_per_contact} + 1) as score,
            'Because you watched Title ' || (i % 20000) as reason,
            't_' || (i % 20000) as reason_title_id
        from range({contacts * recs_per_contact}) as t(i)
        """
    )
    con.execute(
        """
        create or replace table exports.crm_similar_titles as
        select 't_' || i as title_id, r::integer as rank, 't_' || ((i + r) % 20000)
            as similar_title_id, 'Title ' || ((i + r) % 20000) as similar_title_name,
            0.5 as score
        from range(20000) as a(i), range(1, 11) as b(r)
        """
    )
    con.execute(
        """
        create or replace table exports.crm_triggers as
        select md5(user_id) as trigger_id, user_id, 'became_fan' as scenario,
            'category' as subject_type, 'drama' as subject_id, 'Drama' as subject_name,
            'drama' as category, null::varchar as cancel_reason,
            null::varchar as cancel_reason_description,
            null::boolean as is_cancel_reason_addressable,
            timestamp '2026-09-28' as occurred_at, timestamp '2026-09-30' as fired_at
        from exports.crm_contacts using sample 2 percent (bernoulli, 7)
        """
    )
    seconds = add_row_hashes(con)
    con.close()
    return seconds


def add_row_hashes(con) -> float:
    """Each export table's _row_hash, as the export models compute it in dbt; the seconds.

    Not part of a sync: the export models compute it when dbt builds them.
    """
    started = time.perf_counter()
    for spec in contract.TABLES:
        table = f"exports.{spec.name}"
        columns = {r[0] for r in con.execute(f"describe {table}").fetchall()}
        rest = "* exclude (_row_hash)" if contract.ROW_HASH in columns else "*"
        con.execute(
            f"create or replace table {table} as "
            f"select {rest}, {contract.row_hash_sql(spec)} as _row_hash from {table}"
        )
    return time.perf_counter() - started


def change_one_percent(path: Path) -> float:
    """1 % of the contacts and of the recommendation rows: update, delete, insert a third each.

    Returns the seconds spent re-computing the row hashes (as a dbt build would).
    """
    con = duckdb.connect(str(path))
    con.execute(
        """
        -- contacts: ids ending in 01..33 / 34..66 / 67..99 of every 100 * 100
        update exports.crm_contacts set churn_risk = 1 - churn_risk, churn_risk_band = 'high'
            where hash(user_id) % 300 = 0;
        delete from exports.crm_contacts where hash(user_id) % 300 = 1;
        insert into exports.crm_contacts
            select * replace ('n' || user_id as user_id) from exports.crm_contacts
            where hash(user_id) % 300 = 2;
        -- recommendations of those users follow them
        delete from exports.crm_recommendations where hash(user_id) % 300 = 1;
        insert into exports.crm_recommendations
            select * replace ('n' || user_id as user_id) from exports.crm_recommendations
            where hash(user_id) % 300 = 2;
        -- and 1/3 % of the other rows get a new title
        update exports.crm_recommendations set title_id = 't_x' || rank, title_name = 'New'
            where hash(user_id, rank) % 300 = 3;
        """
    )
    seconds = add_row_hashes(con)  # what the next dbt build of the export models does
    con.close()
    return seconds


def clear_pg(schema: str) -> None:
    import psycopg2

    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'drop schema if exists "{schema}" cascade')
    con.close()


def one_run(kind: str, root: Path, contacts: int, recs_per_contact: int) -> dict:
    """Build the warehouse, then a first sync, a 1 % re-sync and a no-op re-sync."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    warehouse = root / f"{kind}.duckdb"
    t = time.perf_counter()
    hash_s = build(warehouse, contacts, recs_per_contact)
    print(
        f"[{kind}] warehouse built in {time.perf_counter() - t:.1f} s "
        f"(adding the row hashes, a rewrite of the tables here: {hash_s:.1f} s; "
        "dbt computes them while it builds the models)",
        flush=True,
    )
    if kind == "sqlite":
        target = targets.SqliteTarget(root / "crm.sqlite")
    else:
        clear_pg(PG_SCHEMA)
        target = targets.PostgresTarget(PG_URL, PG_SCHEMA)
    first = sync.sync(target, warehouse_path=warehouse, state_dir=root / "state")
    print(first.format_table(), flush=True)
    rehash_s = change_one_percent(warehouse)
    again = sync.sync(target, warehouse_path=warehouse, state_dir=root / "state")
    print(again.format_table(), flush=True)
    noop = sync.sync(target, warehouse_path=warehouse, state_dir=root / "state")
    print(f"no-op re-sync: {noop.status} in {noop.seconds:.1f} s", flush=True)
    if kind == "postgresql":
        clear_pg(PG_SCHEMA)
    changed = sum(t.changes for t in again.tables)
    rows = sum(t.source_rows for t in again.tables)
    return {
        "target": kind,
        "rows": rows,
        "first_sync_s": first.seconds,
        "resync_1pct_s": again.seconds,
        "resync_changed_rows": changed,
        "resync_changed_share": round(changed / rows, 4),
        "noop_resync_s": noop.seconds,
        "first_sync_phases": first.timings,
        "resync_phases": again.timings,
        "resync_over_first": round(again.seconds / first.seconds, 3),
        "row_hash_build_s": round(hash_s, 2),
        "row_hash_after_change_s": round(rehash_s, 2),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--recs-per-contact", type=int, default=10)
    ap.add_argument("--targets", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=1, help="runs per target; medians reported")
    ap.add_argument("--out", default="bench-results/bench_sync.json")
    args = ap.parse_args()

    runs, medians = [], []
    with tempfile.TemporaryDirectory(prefix="ottp-bench-sync-") as tmp:
        for kind in args.targets.split(","):
            mine = [
                one_run(kind, Path(tmp) / f"{kind}-{i}", args.contacts, args.recs_per_contact)
                for i in range(args.repeat)
            ]
            runs += mine
            medians.append(
                {"target": kind, "runs": len(mine)}
                | {
                    k: round(statistics.median(r[k] for r in mine), 3)
                    for k in ("first_sync_s", "resync_1pct_s", "noop_resync_s", "resync_over_first")
                }
            )
    print(json.dumps(runs, indent=2))
    print("medians:", json.dumps(medians, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"contacts": args.contacts, "runs": runs, "medians": medians}, indent=2)
    )


if __name__ == "__main__":
    main()
