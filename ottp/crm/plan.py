"""Diff planning: what a sync must insert, update, delete or reject per table.

Each export table carries ``_row_hash``, the hash of its other columns that
the export models compute (``ottp.crm.contract.row_hash_sql``). The diff
full-joins the source by primary key with the local snapshot of the last
successful sync (keys and hashes in a DuckDB file per target, re-read from the
target when the two disagree), comparing hashes: a row whose hash is the
snapshot's for its key is dropped by the join and never cast, checked or
hashed. The rows the join keeps are cast to the contract's types and checked:
rows the target would refuse (null keys or values, duplicate keys, broken
rules, NUL characters) are rejected with their key and reason. A first sync (an empty
snapshot) checks every row in one scan and, when none is rejected, streams
the source to the target as it is, without copying it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from ottp.crm.contract import DUCKDB, ROW_HASH, SQL_TYPES, Column, TableSpec, quote
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
    # The staged source rows (SQL), and whether every one of them is an insert
    # (a first sync without rejections: the source is streamed as it is).
    source: str
    all_inserts: bool
    # DuckDB table of the keys, operation and hash of every change.
    delta: str
    # DuckDB table of the full rows of the inserted and updated keys, checked
    # (None when all_inserts).
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


def _stage_expression(column: Column, alias: str = "") -> str:
    cast = SQL_TYPES[column.type][DUCKDB]
    expr = f"cast({alias}{quote(column.name)} as {cast})"
    if column.type == "text":
        # Empty text travels as null: one spelling for every target and CSV.
        expr = f"nullif({expr}, '')"
    return expr


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
    """Diff ``spec``'s source keys and row hashes against the snapshot, count the verdicts."""
    table = f"wh.{quote(source_schema)}.{quote(spec.name)}"
    present = {
        r[0]
        for r in duck.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = 'wh' and table_schema = ? and table_name = ?",
            [source_schema, spec.name],
        ).fetchall()
    }
    missing = [c for c in spec.column_names if c not in present]
    if missing:
        hint = " (rebuild the export models: dbt build --select path:models/exports)"
        raise SyncError(
            f"{source_schema}.{spec.name} lacks contract columns {missing}"
            + (hint if ROW_HASH in missing else "")
        )
    staged = ", ".join(f"{_stage_expression(c)} as {quote(c.name)}" for c in spec.columns)
    source = f"select {staged} from {table}"
    delta = f"delta_{spec.name}"
    snapshot_rows = _scalar(duck, f"select count(*) from st.{quote(spec.name)}")
    source_rows = _scalar(duck, f"select count(*) from {table}")
    if snapshot_rows == 0 and _all_clean(duck, spec, source):
        # A first sync without rejections: every source row is an insert.
        keys = ", ".join(quote(k) for k in spec.key)
        duck.execute(
            f"create or replace table {delta} as select {keys}, 'insert' as op, "
            f"{quote(ROW_HASH)} from ({source}) limit 0"
        )
        plan = TablePlan(spec, TableResult(spec.name), source, True, delta)
        t = plan.result
        t.source_rows = t.inserted = t.row_count = source_rows
        rows = duck.execute(f"select {keys} from ({source}) order by {keys} limit {_SAMPLE_KEYS}")
        t.sample_keys["insert"] = [dict(zip(spec.key, r, strict=True)) for r in rows.fetchall()]
        return plan
    plan = TablePlan(spec, TableResult(spec.name), source, False, delta, f"changes_{spec.name}")
    _diff(duck, plan, table)
    return _count(duck, plan, source_rows, snapshot_rows)


def _scalar(duck, query: str):
    return duck.execute(query).fetchall()[0][0]


def _all_clean(duck, spec: TableSpec, source: str) -> bool:
    """Whether no source row would be rejected: one scan for the row checks, and
    one for duplicate keys."""
    keys = ", ".join(quote(k) for k in spec.key)
    if _scalar(
        duck, f"select count(*) from ({source}) where ({_reject_expression(spec)}) is not null"
    ):
        return False
    # As many distinct 64-bit hashes of the key as rows proves the keys distinct,
    # at a fraction of the cost of grouping by the key itself; otherwise (a
    # duplicate, or two keys whose hashes collide) the exact check decides.
    rows, hashes = duck.execute(
        f"select count(*), count(distinct hash({keys})) from ({source})"
    ).fetchall()[0]
    if rows == hashes:
        return True
    dups = f"select {keys} from ({source}) group by {keys} having count(*) > 1"
    return not _scalar(duck, f"select count(*) from ({dups})")


def _diff(duck, plan: TablePlan, table: str) -> None:
    """The changed rows, in one join of the source with the snapshot, checked."""
    spec = plan.spec
    keys = ", ".join(quote(k) for k in spec.key)
    h, changes = quote(ROW_HASH), plan.changes
    staged = [
        f"coalesce({_stage_expression(c, 's.')}, p.{quote(c.name)})"
        if c.name in spec.key
        else _stage_expression(c, "s.")
        for c in spec.columns
    ]
    columns = ", ".join(
        f"{e} as {quote(c.name)}" for e, c in zip(staged, spec.columns, strict=True)
    )
    # A row whose hash the snapshot holds for its key is unchanged: the join
    # drops it as soon as it has compared the two, and only the rows it keeps
    # are cast and checked. (A source row whose key is null or empty matches
    # no snapshot row, so a matched key is never null on the source side.)
    duck.execute(
        f"""
        create or replace table {changes} as
        select *, case when op <> 'delete' then {_reject_expression(spec)} end as _reject
        from (
            select {columns},
                case when p.{h} is null then 'insert'
                     when s.{quote(spec.key[0])} is null then 'delete' else 'update' end as op
            from {table} as s
            full join st.{quote(spec.name)} as p on {_match("s", "p", spec.key)}
            where p.{h} is null or s.{h} is distinct from p.{h}
        )
        """
    )
    if _may_have_duplicates(duck, plan, table):
        _reject_duplicates(duck, plan)
    # A rejected key keeps its previous version in the target (it is neither
    # updated nor deleted: a key with any source row is never a delete).
    duck.execute(
        f"create or replace table {plan.delta} as "
        f"select {keys}, op, {h} from {changes} where _reject is null"
    )


def _may_have_duplicates(duck, plan: TablePlan, table: str) -> bool:
    """False when the counts prove that no source key has two rows.

    Source rows = changed rows + rows equal to the snapshot's; without
    duplicates, each equal row matches one snapshot key of its own, which is
    neither deleted nor updated: so the two counts agree and no key appears
    twice among the changed rows. Otherwise the exact check runs.
    """
    spec = plan.spec
    keys = ", ".join(quote(k) for k in spec.key)
    changed, updated, deleted, repeated = duck.execute(
        f"select count(*) filter (where op <> 'delete'), count(*) filter (where op = 'update'), "
        f"count(*) filter (where op = 'delete'), "
        f"(select count(*) from (select {keys} from {plan.changes} where op <> 'delete' "
        f"group by {keys} having count(*) > 1)) from {plan.changes}"
    ).fetchall()[0]
    if changed == 0:
        return False
    source_rows = _scalar(duck, f"select count(*) from {table}")
    snapshot_rows = _scalar(duck, f"select count(*) from st.{quote(spec.name)}")
    return repeated > 0 or source_rows - changed != snapshot_rows - deleted - updated


def _reject_duplicates(duck, plan: TablePlan) -> None:
    """Every copy of a duplicated key is rejected, when one of them would change
    the target (which one is right is unknowable); copies equal to the snapshot's
    row are reported too."""
    spec, changes = plan.spec, plan.changes
    keys = ", ".join(quote(k) for k in spec.key)
    duck.execute(
        f"""
        create or replace temp table _duplicates as
        select {keys} from ({plan.source}) as s
        semi join (select {keys} from {changes} where op <> 'delete' and _reject is null) as c
            on {_match("s", "c", spec.key)}
        group by {keys} having count(*) > 1
        """
    )
    if not _scalar(duck, "select count(*) from _duplicates"):
        return
    duck.execute(
        f"delete from {changes} as c using _duplicates as d where {_match('c', 'd', spec.key)}"
    )
    duck.execute(
        f"""
        insert into {changes} by name
        select s.*, case when p.{quote(ROW_HASH)} is null then 'insert' else 'update' end as op,
            'duplicate key' as _reject
        from ({plan.source}) as s
        semi join _duplicates as d on {_match("s", "d", spec.key)}
        left join st.{quote(spec.name)} as p on {_match("s", "p", spec.key)}
        """
    )


def _count(duck, plan: TablePlan, source_rows: int, snapshot_rows: int) -> TablePlan:
    spec, delta = plan.spec, plan.delta
    keys = ", ".join(quote(k) for k in spec.key)
    counts = dict(duck.execute(f"select op, count(*) from {delta} group by op").fetchall())
    rejected = _scalar(duck, f"select count(*) from {plan.changes} where _reject is not null")
    t = plan.result
    t.source_rows = source_rows
    t.inserted = counts.get("insert", 0)
    t.updated = counts.get("update", 0)
    t.deleted = counts.get("delete", 0)
    t.rejected = rejected
    t.unchanged = source_rows - rejected - t.inserted - t.updated
    t.row_count = snapshot_rows + t.inserted - t.deleted
    for op in ("insert", "update", "delete"):
        if counts.get(op):
            rows = duck.execute(
                f"select {keys} from {delta} where op = ? order by {keys} limit {_SAMPLE_KEYS}",
                [op],
            ).fetchall()
            t.sample_keys[op] = [dict(zip(spec.key, r, strict=True)) for r in rows]
    if rejected:
        rows = duck.execute(
            f"select {keys}, _reject from {plan.changes} where _reject is not null "
            f"order by {keys} nulls first limit {_MAX_REJECTIONS_KEPT}"
        ).fetchall()
        plan.rejections = [
            Rejection(spec.name, dict(zip(spec.key, r[:-1], strict=True)), r[-1]) for r in rows
        ]
    return plan


def _match(left: str, right: str, key: Sequence[str], null_safe: bool = False) -> str:
    op = "is not distinct from" if null_safe else "="
    return " and ".join(f"{left}.{quote(k)} {op} {right}.{quote(k)}" for k in key)


def rows_query(plan: TablePlan, op: str, *, for_sqlite: bool = False) -> str:
    """The full rows of one operation, in contract order (in key order for SQLite)."""
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
        return f"select {', '.join(cols)} from ({plan.source}) as s{order}"
    return (
        f"select {', '.join(cols)} from {plan.changes} as s "
        f"where op = '{op}' and _reject is null{order}"
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
        if plan.all_inserts:
            duck.execute(
                f"insert into st.{quote(spec.name)} select {keys}, {quote(ROW_HASH)} "
                f"from ({plan.source})"
            )
            continue
        duck.execute(
            f"delete from st.{quote(spec.name)} as p using {plan.delta} as d "
            f"where d.op in ('update', 'delete') and {_match('p', 'd', spec.key)}"
        )
        duck.execute(
            f"insert into st.{quote(spec.name)} select {keys}, {quote(ROW_HASH)} "
            f"from {plan.delta} where op in ('insert', 'update')"
        )
    duck.execute("update st.sync_state set run_id = ?, saved_at = now()", [run_id])
    duck.execute("commit")
