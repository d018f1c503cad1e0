"""Reverse ETL: push the warehouse's CRM export tables into a CRM database.

This module owns the ``sync()`` entry point and its result types; the pieces
it runs live beside it: ``contract`` (the export tables' columns, keys and
types), ``targets`` (SQLite or PostgreSQL, connections, retries), ``plan``
(staging and diffing the source rows) and ``appliers`` (writing a plan to a
target). A sync mirrors every export table:

* each export row carries a hash of its columns (63 bits), computed by the export
  models (``_row_hash``); the source keys and hashes are diffed by primary key
  against the state of the last successful sync (a local DuckDB snapshot of
  keys and hashes, checked against the target's ``sync_history`` and re-read
  from the target when they disagree), and only changed rows are cast and checked;
* only inserts, updates and deletes are written, all tables in one target
  transaction with the ``sync_history`` row, so a CRM reader sees the previous
  sync or this one, never half of one; unchanged data writes nothing;
* rows the target would refuse (null keys, duplicate keys, broken constraints,
  NUL characters) are rejected with their key and reason, and their previous
  version stays in the target.

Credentials come only from the environment (``ottp.config``) and never appear
in results, logs or errors.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ottp import config
from ottp.crm.appliers import applier_for
from ottp.crm.contract import EXPORT_SCHEMA, TABLES, TableSpec, identifier
from ottp.crm.plan import (
    Rejection,
    TablePlan,
    TableResult,
    ensure_state,
    plan_table,
    reload_snapshot,
    save_snapshot,
    source_as_of,
)
from ottp.crm.targets import (
    RetryPolicy,
    SyncError,
    Target,
    TargetUnavailable,
    default_state_dir,
    is_transient,
    retry_policy,
    target_from_url,
    to_target_timestamp,
)

# The sync's public names: sync(), its results and the errors it raises.
__all__ = [
    "LOCK_WAIT_S",
    "Rejection",
    "SyncError",
    "SyncResult",
    "TableResult",
    "TargetUnavailable",
    "sync",
]

logger = logging.getLogger(__name__)

# How long a sync waits for another process to release the warehouse file (a
# loader or dbt writing it) or this target's local snapshot (another sync).
LOCK_WAIT_S = 600.0


@dataclass
class SyncResult:
    """What one sync did: counts per table, rejections, attempts, timings."""

    run_id: str
    target: str
    status: str  # success | unchanged | dry_run | failed
    started_at: datetime
    finished_at: datetime | None = None
    tables: list[TableResult] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    error: str | None = None
    source_as_of: datetime | None = None
    # True when the local snapshot disagreed with the target and was re-read from it.
    reconciled: bool = False
    # Attempts made (more than one when the target was unreachable or dropped
    # the connection), and the waits between them in seconds.
    attempts: int = 1
    retry_waits: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # Seconds per phase: prepare, reconcile, diff (keys and hashes, then the changed
    # rows), apply, snapshot.
    timings: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - since, 3)
        return now

    def total(self, attr: str) -> int:
        return sum(getattr(t, attr) for t in self.tables)

    @property
    def changes(self) -> int:
        return sum(t.changes for t in self.tables)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["changes"] = self.changes
        return d

    def history_rows(self, kind: str) -> tuple[tuple, list[tuple], list[tuple]]:
        """This sync as rows of the target's sync_history, sync_history_tables and
        sync_rejections tables (timestamps as ``kind`` stores them)."""
        self.finished_at = self.finished_at or datetime.now(UTC).replace(tzinfo=None)
        history = (
            self.run_id,
            to_target_timestamp(self.started_at, kind),
            to_target_timestamp(self.finished_at, kind),
            self.status,
            to_target_timestamp(self.source_as_of, kind),
            self.total("inserted"),
            self.total("updated"),
            self.total("deleted"),
            self.total("unchanged"),
            self.total("rejected"),
            self.error,
        )
        tables = [
            (
                self.run_id,
                t.table,
                t.inserted,
                t.updated,
                t.deleted,
                t.unchanged,
                t.rejected,
                t.row_count,
            )
            for t in self.tables
        ]
        rejections = [
            (self.run_id, r.table, json.dumps(r.key, default=str, sort_keys=True), r.reason)
            for r in self.rejections
        ]
        return history, tables, rejections

    def format_table(self) -> str:
        lines = [
            f"sync {self.run_id} -> {self.target}: {self.status}"
            + (f" ({self.error})" if self.error else "")
            + f" in {self.seconds:.1f} s "
            + "("
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
            + ")",
            f"{'table':<22}{'source':>11}{'insert':>10}{'update':>10}{'delete':>10}"
            f"{'unchanged':>11}{'rejected':>10}{'rows after':>12}",
        ]
        for t in self.tables:
            lines.append(
                f"{t.table:<22}{t.source_rows:>11,}{t.inserted:>10,}{t.updated:>10,}"
                f"{t.deleted:>10,}{t.unchanged:>11,}{t.rejected:>10,}{t.row_count:>12,}"
            )
        for r in self.rejections[:20]:
            lines.append(f"rejected {r.table} {json.dumps(r.key, default=str)}: {r.reason}")
        if len(self.rejections) > 20:
            lines.append(f"... {len(self.rejections) - 20} more rejected rows")
        return "\n".join(lines)


def sync(
    target: Target | None = None,
    *,
    warehouse_path: Path | str | None = None,
    dry_run: bool = False,
    state_dir: Path | str | None = None,
    tables: Sequence[TableSpec] = TABLES,
    source_schema: str = EXPORT_SCHEMA,
    on_table_applied: Callable[[str], None] | None = None,
    retry: RetryPolicy | None = None,
    lock_wait_s: float = LOCK_WAIT_S,
) -> SyncResult:
    """Mirror the export tables into ``target`` (default: from the environment).

    Returns the counts per table; a failed apply is rolled back, recorded in the
    target's ``sync_history`` with its error, and raised as :class:`SyncError`.
    A target that is unreachable or drops the connection is retried with
    backoff (``retry``, default :func:`~ottp.crm.targets.retry_policy`).
    ``on_table_applied`` is called inside the transaction after each table
    (tests use it to crash mid-sync).
    """
    started = time.perf_counter()
    target = target or target_from_url()
    retry = retry or retry_policy()
    warehouse_path = Path(warehouse_path or config.settings().warehouse_path)
    state_dir = Path(state_dir or default_state_dir())
    source_schema = identifier(source_schema)
    result = SyncResult(
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8],
        target=target.describe(),
        status="dry_run" if dry_run else "success",
        started_at=datetime.now(UTC).replace(tzinfo=None),
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / (target.identity() + ".duckdb")
    duck = duckdb.connect()
    try:
        _attach(duck, warehouse_path, state_path, lock_wait_s)
        ensure_state(duck, tables)
        result.source_as_of = source_as_of(duck)

        def attempt() -> list[TablePlan] | None:
            return _attempt(
                duck, target, result, started, dry_run, tables, source_schema, on_table_applied
            )

        plans = _with_retries(attempt, target, result, retry)
        if plans is not None:
            lap = time.perf_counter()
            save_snapshot(duck, plans, result.run_id)
            result.lap("snapshot", lap)
        return _finish(result, started)
    finally:
        duck.close()


def _attach(duck, warehouse_path: Path, state_path: Path, lock_wait_s: float) -> None:
    """The warehouse (read only) as ``wh`` and this target's local snapshot as ``st``."""
    from ottp.warehouse import wait_for_lock

    duck.execute("set TimeZone = 'UTC'")
    duck.execute("set preserve_insertion_order = false")
    # Another process writing the warehouse (a loader, dbt) or syncing to
    # this target from this machine holds the file: wait for it.
    wait_for_lock(
        lambda: duck.execute(f"attach '{_sql_path(warehouse_path)}' as wh (read_only)"),
        f"warehouse {warehouse_path}",
        lock_wait_s,
    )
    wait_for_lock(
        lambda: duck.execute(f"attach '{_sql_path(state_path)}' as st"),
        f"sync state {state_path}",
        lock_wait_s,
    )


def _with_retries(
    attempt: Callable[[], list[TablePlan] | None],
    target: Target,
    result: SyncResult,
    retry: RetryPolicy,
) -> list[TablePlan] | None:
    """``attempt()`` until it succeeds, retrying failures of the target's availability."""
    while True:
        try:
            return attempt()
        except Exception as e:
            if not is_transient(e):
                raise
            if result.attempts >= retry.attempts:
                result.status = "failed"
                result.error = target.scrub(_safe_error(e))
                raise SyncError(
                    f"{target.describe()} unavailable after {result.attempts} attempts "
                    f"(waited {sum(result.retry_waits):g} s); the target is unchanged: "
                    f"{result.error}"
                ) from None
            wait = retry.delay(result.attempts)
            logger.warning(
                "sync %s: attempt %d of %d failed (%s); retrying in %g s",
                result.run_id,
                result.attempts,
                retry.attempts,
                target.scrub(_safe_error(e)),
                wait,
            )
            time.sleep(wait)
            result.retry_waits.append(wait)
            result.attempts += 1


def _attempt(
    duck, target, result, started, dry_run, tables, source_schema, on_table_applied
) -> list[TablePlan] | None:
    """One try against the target; the plans applied, or None when nothing was written."""
    committed = list(result.tables)  # what an earlier attempt applied, if it did
    result.tables.clear()
    result.rejections.clear()
    with applier_for(target, create=not dry_run) as applier:
        applier.ensure_tables(tables, create=not dry_run)
        last = applier.last_success()
        state_run = duck.execute("select run_id from st.sync_state").fetchall()[0][0]
        lap = result.lap("prepare", started)
        if last is not None and last.run_id == result.run_id:
            # An earlier attempt committed but lost its answer: keep its counts.
            reload_snapshot(duck, applier, tables, last.run_id)
            result.tables[:] = committed
            result.reconciled = True
            logger.info("sync %s: committed by an earlier attempt", result.run_id)
            return None
        if last is None and state_run is None:
            pass  # a first sync: both sides empty
        elif last is None or state_run != last.run_id:
            reload_snapshot(duck, applier, tables, last.run_id if last else None)
            result.reconciled = True
            lap = result.lap("reconcile", lap)
        plans = [plan_table(duck, spec, source_schema) for spec in tables]
        for plan in plans:
            result.rejections.extend(plan.rejections)
            result.tables.append(plan.result)
        lap = result.lap("diff", lap)
        if dry_run:
            return None
        # Rejections are kept for the latest sync only, so a key that left the
        # exports (an opted-out or deleted user) does not stay in the target.
        stale = applier.stored_rejections() != _rejection_rows(result)
        if result.changes == 0 and not stale:
            result.status = "unchanged"
            return None
        _apply(duck, applier, target, plans, result, last, lap, on_table_applied)
    return plans


def _apply(duck, applier, target, plans, result, last, lap, on_table_applied) -> None:
    """Apply every plan in one target transaction."""

    def applied(table: str) -> None:
        t = next(t for t in result.tables if t.table == table)
        logger.info(
            "sync %s: applied %s (%d inserted, %d updated, %d deleted), not committed yet",
            result.run_id,
            table,
            t.inserted,
            t.updated,
            t.deleted,
        )
        if on_table_applied:
            on_table_applied(table)

    try:
        applier.apply(duck, plans, result, last, applied)
        result.lap("apply", lap)
        logger.info("sync %s: committed %d changes", result.run_id, result.changes)
    except BaseException as e:
        if isinstance(e, Exception) and is_transient(e):
            raise  # rolled back by the server; the caller retries
        # The local snapshot may not match what a failed apply met in the
        # target (rows edited by hand): re-read it next time.
        duck.execute("update st.sync_state set run_id = null")
        result.status = "failed"
        result.error = target.scrub(_safe_error(e))
        result.finished_at = datetime.now(UTC).replace(tzinfo=None)
        if isinstance(e, Exception):
            _record_failure(applier, result)
            raise SyncError(result.error) from e
        raise


def _rejection_rows(result: SyncResult) -> set[tuple[str, str, str]]:
    return {
        (r.table, json.dumps(r.key, default=str, sort_keys=True), r.reason)
        for r in result.rejections
    }


def _record_failure(applier, result: SyncResult) -> None:
    try:
        applier.record_failure(result)
    except Exception:  # the target may be the thing that failed
        pass


def _finish(result: SyncResult, started: float) -> SyncResult:
    result.finished_at = result.finished_at or datetime.now(UTC).replace(tzinfo=None)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _safe_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {str(e).strip()}"
    return text[:2000]


def _sql_path(path: Path) -> str:
    # Our own file paths (not data) inside a SQL string literal.
    return str(path).replace("'", "''")
