"""Diff planning: what a sync must insert, update, delete or reject per table.

The source rows are staged in DuckDB from the warehouse's export tables, cast
to the contract's types with a 64-bit hash per row, and diffed by primary key
against the local snapshot of the last successful sync (keys and hashes in a
DuckDB file per target, re-read from the target when the two disagree). Rows
the target would refuse (null keys, duplicate keys, broken rules, NUL
characters) are rejected with their key and reason. Only keys, hashes and
verdicts are kept; the full rows of changed keys are read once, for the
appliers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from ottp.crm.contract import DUCKDB, SQL_TYPES, Column, TableSpec, quote
from ottp.crm.targets import SyncError

# Rejections kept in results and in the target per table (the count is exact).
_MAX_REJECTIONS_KEPT = 1_000
_SAMPLE_KEYS = 5


@dataclass
class Rejection:
    """A source row the target would refuse: its key and why."""

    table: str
    key: dict
    reason: str


@dataclass
class TableResult:
    """What a sync does to one table; the sync's result reports one per table."""

    table: str
    source_rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    # Rows in the target table once this sync is applied.
    row_count: int = 0
    sample_keys: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass
class TablePlan:
    """One table's diff: counts, rejections and the DuckDB tables an applier reads."""

    spec: TableSpec
    result: TableResult
    # DuckDB tables holding this table's staged keys and hashes, and its delta.
    src: str
    delta: str
    # The staged source rows (SQL), and whether every one of them is an insert.
    source: str
    all_inserts: bool
    # Table of the full inserted and updated rows, once read (see read_changes).
    changes: str | None = None
    rejections: list[Rejection] = field(default_factory=list)


def source_as_of(duck: duckdb.DuckDBPyConnection) -> datetime | None:
    """The attached warehouse's as_of (None before the marts exist)."""
    exists = duck.execute(
        "select count(*) from information_schema.columns where table_catalog = 'wh' "
        "and table_schema = 'marts' and table_name = 'user_lifecycle' "
        "and column_name = 'as_of_at'"
    ).fetchall()[0][0]
    if not exists:
        return None
    return duck.execute("select max(as_of_at) from wh.marts.user_lifecycle").fetchall()[0][0]


def ensure_state(duck: duckdb.DuckDBPyConnection, tables: Sequence[TableSpec]) -> None:
    """The local snapshot's tables (attached as ``st``): last run id, keys and hashes."""
    duck.execute("create table if not exists st.sync_state (run_id varchar, saved_at timestamp)")
    if duck.execute("select count(*) from st.sync_state").fetchall()[0][0] == 0:
        duck.execute("insert into st.sync_state values (null, null)")
    for spec in tables:
        cols = ", ".join(f"{quote(k)} {SQL_TYPES[spec.column(k).type][DUCKDB]}" for k in spec.key)
        duck.execute(f"create table if not exists st.{quote(spec.name)} ({cols}, _row_hash bigint)")


def reload_snapshot(duck, applier, tables: Sequence[TableSpec], run_id: str | None) -> None:
    """Replace the local snapshot with the keys and hashes the target holds now."""
    duck.execute("begin")
    for spec in tables:
        duck.execute(f"delete from st.{quote(spec.name)}")
        applier.read_state(duck, spec, f"st.{quote(spec.name)}")
    duck.execute("update st.sync_state set run_id = ?, saved_at = now()", [run_id])
    duck.execute("commit")


def _stage_expression(spec: TableSpec, column: Column) -> str:
    cast = SQL_TYPES[column.type][DUCKDB]
    expr = f"cast({quote(column.name)} as {cast})"
    if column.type == "text":
        # Empty text travels as null: one spelling for every target and CSV.
        expr = f"nullif({expr}, '')"
    return f"{expr} as {quote(column.name)}"


def _reject_expression(spec: TableSpec) -> str:
    whens = []
    for c in spec.columns:
        if not c.nullable or c.name in spec.key:
            whens.append(f"when {quote(c.name)} is null then 'null value in {c.name}'")
    for c in spec.columns:
        if c.type == "text":
            whens.append(f"when contains({quote(c.name)}, chr(0)) then 'NUL character in {c.name}'")
    for r in spec.rules:
        whens.append(f"when not coalesce({r.condition}, true) then '{r.reason}'")
    return f"case {' '.join(whens)} end"


def plan_table(duck, spec: TableSpec, source_schema: str) -> TablePlan:
    """Stage ``spec``'s source rows, diff them against the snapshot, count the verdicts."""
    src, delta = f"src_{spec.name}", f"delta_{spec.name}"
    missing = [
        c
        for c in spec.column_names
        if c
        not in {
            r[0]
            for r in duck.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = 'wh' and table_schema = ? and table_name = ?",
                [source_schema, spec.name],
            ).fetchall()
        }
    ]
    if missing:
        raise SyncError(f"{source_schema}.{spec.name} lacks contract columns {missing}")
    keys = ", ".join(quote(k) for k in spec.key)
    staged = ", ".join(_stage_expression(spec, c) for c in spec.columns)
    source = f"select {staged} from wh.{quote(source_schema)}.{quote(spec.name)}"
    # Only keys, hash and verdict are kept: rows are re-read from the warehouse
    # for the keys that changed. The hash is over the staged values, in contract order.
    duck.execute(
        f"create or replace table {src} as "
        f"select {keys}, {_hash_expression(spec)} as _row_hash, "
        f"{_reject_expression(spec)} as _reject from ({source})"
    )
    _build_delta(duck, spec, src, delta)
    # Every row of a duplicated key is rejected: which one is right is unknowable.
    # Only keys in the delta can matter (copies identical to the synced row change
    # nothing), which spares a group-by over the whole table on a re-sync.
    duplicates = (
        f"select s.* from {src} as s semi join {delta} as d on {_match('s', 'd', spec.key)}"
    )
    dup_keys = f"select {keys} from ({duplicates}) group by {keys} having count(*) > 1"
    if duck.execute(f"select count(*) from ({dup_keys})").fetchall()[0][0]:
        duck.execute(
            f"update {src} as s set _reject = 'duplicate key' "
            f"from ({dup_keys}) as d where {_match('s', 'd', spec.key)}"
        )
        _build_delta(duck, spec, src, delta)
    return _count(duck, spec, src, delta, source)


def _count(duck, spec: TableSpec, src: str, delta: str, source: str) -> TablePlan:
    keys = ", ".join(quote(k) for k in spec.key)
    counts = dict(duck.execute(f"select op, count(*) from {delta} group by op").fetchall())
    source_rows, valid, rejected = duck.execute(
        f"select count(*), count(*) filter (where _reject is null), "
        f"count(*) filter (where _reject is not null) from {src}"
    ).fetchall()[0]
    snapshot_rows = duck.execute(f"select count(*) from st.{quote(spec.name)}").fetchall()[0][0]
    t = TableResult(
        table=spec.name,
        source_rows=source_rows,
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        deleted=counts.get("delete", 0),
        rejected=rejected,
    )
    t.unchanged = valid - t.inserted - t.updated
    t.row_count = snapshot_rows + t.inserted - t.deleted
    for op in ("insert", "update", "delete"):
        if counts.get(op):
            rows = duck.execute(
                f"select {keys} from {delta} where op = ? order by {keys} limit {_SAMPLE_KEYS}",
                [op],
            ).fetchall()
            t.sample_keys[op] = [dict(zip(spec.key, r, strict=True)) for r in rows]
    plan = TablePlan(spec, t, src, delta, source, all_inserts=snapshot_rows == 0 and rejected == 0)
    if rejected:
        rows = duck.execute(
            f"select {keys}, _reject from {src} where _reject is not null "
            f"order by {keys} nulls first limit {_MAX_REJECTIONS_KEPT}"
        ).fetchall()
        plan.rejections = [
            Rejection(spec.name, dict(zip(spec.key, r[:-1], strict=True)), r[-1]) for r in rows
        ]
    return plan


def _build_delta(duck, spec: TableSpec, src: str, delta: str) -> None:
    keys = ", ".join(quote(k) for k in spec.key)
    # A rejected key keeps its previous version in the target: not deleted either.
    duck.execute(
        f"""
        create or replace table {delta} as
        select {", ".join(f"coalesce(s.{quote(k)}, p.{quote(k)}) as {quote(k)}" for k in spec.key)},
            case when p._row_hash is null then 'insert'
                 when s._row_hash is null then 'delete' else 'update' end as op,
            s._row_hash
        from (select {keys}, _row_hash from {src} where _reject is null) as s
        full join st.{quote(spec.name)} as p on {_match("s", "p", spec.key)}
        where s._row_hash is distinct from p._row_hash
          and not (s._row_hash is null and exists (
              select 1 from {src} as r
              where r._reject is not null and {_match("r", "p", spec.key)}))
        """
    )


def _match(left: str, right: str, key: Sequence[str]) -> str:
    return " and ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)


def _hash_expression(spec: TableSpec, alias: str = "") -> str:
    cols = ", ".join(f"{alias}{quote(c)}" for c in spec.column_names)
    return f"(hash({cols}) >> 1)::bigint"


def rows_query(plan: TablePlan, op: str, *, for_sqlite: bool = False) -> str:
    """The full rows of one operation with their hash (in key order for SQLite)."""
    spec = plan.spec
    cols = []
    for c in spec.columns:
        ref = f"s.{quote(c.name)}"
        if for_sqlite and c.type == "timestamp":
            ref = f"cast({ref} as varchar)"
        cols.append(ref)
    order = f" order by {', '.join(f's.{quote(k)}' for k in spec.key)}" if for_sqlite else ""
    if op == "insert" and plan.all_inserts:
        # A first sync without rejections: every source row, no join needed.
        return (
            f"select {', '.join(cols)}, {_hash_expression(spec, 's.')} "
            f"from ({plan.source}) as s{order}"
        )
    return (
        f"select {', '.join(cols)}, s._row_hash from {plan.changes} as s where op = '{op}'{order}"
    )


def read_changes(duck, plan: TablePlan) -> None:
    """Read the full rows of the inserted and updated keys in one scan of the source."""
    t = plan.result
    if plan.all_inserts or not (t.inserted or t.updated):
        return
    plan.changes = f"changes_{plan.spec.name}"
    duck.execute(
        f"create or replace table {plan.changes} as "
        f"select s.*, d.op, d._row_hash from ({plan.source}) as s "
        f"join (select * from {plan.delta} where op in ('insert', 'update')) as d "
        f"on {_match('s', 'd', plan.spec.key)}"
    )


def keys_query(plan: TablePlan, op: str) -> str:
    keys = ", ".join(quote(k) for k in plan.spec.key)
    return f"select {keys} from {plan.delta} where op = '{op}' order by {keys}"


def save_snapshot(duck, plans: Sequence[TablePlan], run_id: str) -> None:
    """Fold the applied deltas into the local snapshot, after the target committed."""
    duck.execute("begin")
    for plan in plans:
        spec = plan.spec
        keys = ", ".join(quote(k) for k in spec.key)
        duck.execute(
            f"delete from st.{quote(spec.name)} as p using {plan.delta} as d "
            f"where d.op in ('update', 'delete') and {_match('p', 'd', spec.key)}"
        )
        duck.execute(
            f"insert into st.{quote(spec.name)} select {keys}, _row_hash "
            f"from {plan.delta} where op in ('insert', 'update')"
        )
    duck.execute("update st.sync_state set run_id = ?, saved_at = now()", [run_id])
    duck.execute("commit")
