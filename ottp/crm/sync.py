"""Reverse ETL: push the warehouse's CRM export tables into a CRM database.

The targets are an embedded SQLite file (default, ``$OTTP_DATA_DIR/crm/crm.sqlite``)
or PostgreSQL when ``CRM_DATABASE_URL`` is set. A sync mirrors every export table:

* the source rows are staged in DuckDB with a 64-bit hash per row;
* they are diffed by primary key against the state of the last successful sync
  (a local DuckDB snapshot of keys and hashes, checked against the target's
  ``sync_history`` and re-read from the target when they disagree);
* only inserts, updates and deletes are written, all tables in one target
  transaction with the ``sync_history`` row, so a CRM reader sees the previous
  sync or this one, never half of one; unchanged data writes nothing;
* rows the target would refuse (null keys, duplicate keys, broken constraints,
  NUL characters) are rejected with their key and reason, and their previous
  version stays in the target.

Bulk work is SQL: DuckDB computes the diff; PostgreSQL receives rows through
COPY and applies updates and deletes from temporary tables; SQLite receives
them through ``executemany``. Values are always parameters or COPY data;
identifiers are validated against a fixed pattern and quoted. Credentials come
only from the environment and never appear in results, logs or errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from ottp import config

logger = logging.getLogger(__name__)

# Environment variables this module reads (documented in docs/crm-exports.md).
DATABASE_URL_VAR = "CRM_DATABASE_URL"
DATABASE_SCHEMA_VAR = "CRM_DATABASE_SCHEMA"
DEFAULT_PG_SCHEMA = "crm"
EXPORT_SCHEMA = "exports"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Rows per executemany() call and per Arrow batch streamed to COPY.
_BATCH_ROWS = 100_000
# An empty table receiving at least this many rows gets its primary key built
# after the load, which is several times faster than maintaining it row by row.
_BULK_LOAD_ROWS = 50_000
# Rejections kept in results and in the target per table (the count is exact).
_MAX_REJECTIONS_KEPT = 1_000
_SAMPLE_KEYS = 5
# How long a sync waits for another process to release the warehouse file (a
# loader or dbt writing it) or this target's local snapshot (another sync).
LOCK_WAIT_S = 600.0
# Environment variables overriding the retry policy (docs/crm-exports.md).
ATTEMPTS_VAR = "CRM_SYNC_ATTEMPTS"
FIRST_DELAY_VAR = "CRM_SYNC_RETRY_DELAY_S"
MAX_DELAY_VAR = "CRM_SYNC_RETRY_MAX_DELAY_S"


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff for a target that is unreachable or drops the
    connection; other errors are not retried. Each attempt is one whole sync: the
    target's transaction of a failed attempt was rolled back."""

    attempts: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt: 1, 2, 4, 8 ... up to the cap."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** (failed_attempts - 1))


def retry_policy() -> RetryPolicy:
    """The policy: the defaults above, or the environment's overrides."""
    default = RetryPolicy()
    return RetryPolicy(
        attempts=max(1, int(os.environ.get(ATTEMPTS_VAR, default.attempts))),
        first_delay_s=float(os.environ.get(FIRST_DELAY_VAR, default.first_delay_s)),
        max_delay_s=float(os.environ.get(MAX_DELAY_VAR, default.max_delay_s)),
    )


def identifier(name: str) -> str:
    """``name`` if it is a plain lowercase SQL identifier, else ValueError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return name


def _q(name: str) -> str:
    return f'"{identifier(name)}"'


# --------------------------------------------------------------------------- contract

# Column types of the contract -> (DuckDB cast, SQLite type, PostgreSQL type).
_TYPES = {
    "text": ("varchar", "text", "text"),
    "integer": ("bigint", "integer", "bigint"),
    "double": ("double", "real", "double precision"),
    "boolean": ("boolean", "integer", "boolean"),
    "timestamp": ("timestamp", "text", "timestamp"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True

    def __post_init__(self) -> None:
        identifier(self.name)
        if self.type not in _TYPES:
            raise ValueError(f"unknown column type {self.type!r}")


@dataclass(frozen=True)
class Rule:
    """A row-level constraint: a DuckDB boolean over the row's columns that must hold.

    The same rule is declared as a CHECK constraint in the target.
    """

    name: str
    condition: str
    reason: str


@dataclass(frozen=True)
class TableSpec:
    """One export table and the CRM table it is mirrored to (same name)."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        identifier(self.name)
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or not set(self.key) <= set(names):
            raise ValueError(f"{self.name}: bad column list or key")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def value_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.name not in self.key]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _cols(*specs: str) -> tuple[Column, ...]:
    """'name:type' or 'name:type!' (not null)."""
    out = []
    for spec in specs:
        name, type_ = spec.split(":")
        out.append(Column(name, type_.rstrip("!"), nullable=not type_.endswith("!")))
    return tuple(out)


_RANK_RULE = Rule("rank_positive", "rank >= 1", "rank must be 1 or more")

# The export contract: what may leave the warehouse. The dbt models in
# models/exports/ have exactly these columns (tests/crm/test_exports.py checks it).
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "crm_contacts",
        key=("user_id",),
        columns=_cols(
            "user_id:text!",
            "lifecycle_stage:text!",
            "subscription_status:text",
            "highest_segment:text!",
            "fan_categories:text",
            "hardcore_fan_categories:text",
            "top_category:text",
            "top_categories:text",
            "taste_cluster_id:integer",
            "taste_cluster_name:text",
            "churn_risk:double",
            "churn_risk_band:text",
            "favourite_title_id:text",
            "favourite_title_name:text",
            "titles_watched:integer!",
            "valid_play_count:integer!",
            "fan_category_count:integer!",
            "hardcore_fan_category_count:integer!",
            "recommendation_count:integer!",
            "pauses_per_hour_watched:double",
            "signed_up_at:timestamp",
            "last_active_at:timestamp",
        ),
        rules=(Rule("churn_risk_share", "churn_risk between 0 and 1", "churn_risk outside 0..1"),),
    ),
    TableSpec(
        "crm_recommendations",
        key=("user_id", "rank"),
        columns=_cols(
            "user_id:text!",
            "rank:integer!",
            "title_id:text!",
            "title_name:text",
            "score:double",
            "reason:text",
            "reason_title_id:text",
        ),
        rules=(_RANK_RULE,),
    ),
    TableSpec(
        "crm_similar_titles",
        key=("title_id", "rank"),
        columns=_cols(
            "title_id:text!",
            "rank:integer!",
            "similar_title_id:text!",
            "similar_title_name:text",
            "score:double",
        ),
        rules=(_RANK_RULE,),
    ),
    TableSpec(
        "crm_triggers",
        key=("trigger_id",),
        columns=_cols(
            "trigger_id:text!",
            "user_id:text!",
            "scenario:text!",
            "subject_type:text!",
            "subject_id:text!",
            "subject_name:text",
            "category:text",
            "cancel_reason:text",
            "cancel_reason_description:text",
            "is_cancel_reason_addressable:boolean",
            "occurred_at:timestamp!",
            "fired_at:timestamp!",
        ),
    ),
)
TABLES_BY_NAME = {t.name: t for t in TABLES}


def _check_sql(spec: TableSpec, rule: Rule) -> str:
    """The rule as a CHECK constraint body (the same SQL in every dialect here)."""
    # Rules are written in this module over contract columns: no data involved.
    return f"({rule.condition})"


# --------------------------------------------------------------------------- results


@dataclass
class Rejection:
    table: str
    key: dict
    reason: str


@dataclass
class TableResult:
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
class SyncResult:
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
    # Seconds per phase: prepare, reconcile, diff, read (changed rows), apply, snapshot.
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


class SyncError(RuntimeError):
    """A sync that could not be applied; the target keeps its previous state."""


class TargetUnavailable(SyncError):
    """The target could not be reached or dropped the connection: worth retrying."""


# SQLSTATE classes and codes of errors that a later attempt may not meet:
# connection exceptions, operator intervention (shutdown, restart), too many
# connections, serialization failures and deadlocks.
_TRANSIENT_CLASSES = ("08", "57", "53")
# Refusals at connect time that another attempt would meet again.
_PERMANENT_CONNECT_ERRORS = (
    "authentication failed",
    "does not exist",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied",
    "invalid",
)
_TRANSIENT_CODES = ("40001", "40P01")


def is_transient(exc: BaseException) -> bool:
    """True for failures of the target's availability rather than of the data."""
    if isinstance(exc, TargetUnavailable):
        return True
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is a dependency
        return False
    if not isinstance(exc, psycopg2.Error):
        return False
    code = exc.pgcode
    if code is None:
        # libpq errors without a SQLSTATE: refused, reset or closed connections.
        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
    return code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES


# --------------------------------------------------------------------------- targets


@dataclass
class LastSync:
    run_id: str
    finished_at: datetime | None
    source_as_of: datetime | None
    row_counts: dict[str, int]


class Target:
    """Common interface of the CRM databases."""

    kind: str

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def identity(self) -> str:
        """Stable id of this target (no credentials) for the local snapshot's file name."""
        return hashlib.sha256(self.describe().encode()).hexdigest()[:16]


class SqliteTarget(Target):
    """An SQLite file in WAL mode: readers in any language see the last committed sync."""

    kind = "sqlite"

    def __init__(self, path: Path | str):
        self.path = Path(path).resolve()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        con.execute("pragma journal_mode = wal")
        # Deleted rows (an opt-out, a deletion) are overwritten, not left in free pages.
        con.execute("pragma secure_delete = on")
        # In WAL mode NORMAL never corrupts the file; a power loss may lose the
        # last commit, which the next sync re-detects from sync_history.
        con.execute("pragma synchronous = normal")
        return con


class PostgresTarget(Target):
    kind = "postgresql"

    def __init__(self, url: str, schema: str = DEFAULT_PG_SCHEMA):
        self._url = url  # may hold a password: never printed
        self.schema = identifier(schema)

    def describe(self) -> str:
        parts = urlsplit(self._url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path} schema {self.schema}"

    def connect(self):
        import psycopg2

        try:
            return psycopg2.connect(self._url)
        except psycopg2.Error as e:
            message = self.scrub(str(e).strip())
            permanent = any(m in message.lower() for m in _PERMANENT_CONNECT_ERRORS)
            error = SyncError if permanent or not is_transient(e) else TargetUnavailable
            raise error(f"cannot connect to {self.describe()}: {message}") from None

    def scrub(self, text: str) -> str:
        """``text`` without the URL or its password (libpq may quote them back)."""
        for secret in (self._url, urlsplit(self._url).password):
            if secret:
                text = text.replace(secret, "***")
        return text


def target_from_url(url: str | None = None, schema: str | None = None) -> Target:
    """The target for ``url``: ``sqlite:///path`` or ``postgresql://...``.

    Without a URL: ``CRM_DATABASE_URL`` when set, else the embedded SQLite file.
    """
    url = url or os.environ.get(DATABASE_URL_VAR)
    if not url:
        return SqliteTarget(config.settings().data_dir / "crm" / "crm.sqlite")
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteTarget(url.split("sqlite:///", 1)[1] if "sqlite:///" in url else "")
    if scheme in ("postgresql", "postgres"):
        return PostgresTarget(url, schema or os.environ.get(DATABASE_SCHEMA_VAR, DEFAULT_PG_SCHEMA))
    raise ValueError(f"unsupported CRM target scheme {scheme!r} (sqlite or postgresql)")


def default_state_dir() -> Path:
    return config.settings().data_dir / "crm" / "state"


# ----------------------------------------------------------------- target DDL and state

_HISTORY_COLUMNS = (
    ("run_id", "text", False),
    ("started_at", "timestamp", False),
    ("finished_at", "timestamp", True),
    ("status", "text", False),
    ("source_as_of", "timestamp", True),
    ("inserted", "integer", False),
    ("updated", "integer", False),
    ("deleted", "integer", False),
    ("unchanged", "integer", False),
    ("rejected", "integer", False),
    ("error", "text", True),
)
_HISTORY_TABLE_COLUMNS = (
    ("run_id", "text", False),
    ("table_name", "text", False),
    ("inserted", "integer", False),
    ("updated", "integer", False),
    ("deleted", "integer", False),
    ("unchanged", "integer", False),
    ("rejected", "integer", False),
    ("row_count", "integer", False),
)
_REJECTION_COLUMNS = (
    ("run_id", "text", False),
    ("table_name", "text", False),
    ("row_key", "text", False),
    ("reason", "text", False),
)


def _ddl(kind: str, qualified: str, columns, key: Sequence[str], checks=()) -> str:
    idx = 1 if kind == "sqlite" else 2
    parts, checks = [], list(checks)
    for name, type_, nullable in columns:
        sql_type = _TYPES[type_][idx]
        parts.append(f"{_q(name)} {sql_type}{'' if nullable else ' not null'}")
        if kind == "sqlite" and type_ == "boolean":
            checks.append(f"({_q(name)} in (0, 1))")
    parts.extend(f"check {c}" for c in checks)
    if key:
        parts.append(f"primary key ({', '.join(_q(k) for k in key)})")
    suffix = " without rowid" if kind == "sqlite" and key else ""
    return f"create table if not exists {qualified} ({', '.join(parts)}){suffix}"


def _table_columns(spec: TableSpec):
    cols = [(c.name, c.type, c.nullable and c.name not in spec.key) for c in spec.columns]
    return [*cols, ("_row_hash", "integer", False)]


# --------------------------------------------------------------------------- the sync


@dataclass
class _Plan:
    spec: TableSpec
    result: TableResult
    # DuckDB tables holding this table's staged keys and hashes, and its delta.
    src: str
    delta: str
    # The staged source rows (SQL), and whether every one of them is an insert.
    source: str
    all_inserts: bool
    # Table of the full inserted and updated rows, once read (see _read_changes).
    changes: str | None = None


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
    backoff (``retry``, default :func:`retry_policy`). ``on_table_applied`` is
    called inside the transaction after each table (tests use it to crash mid-sync).
    """
    from ottp.warehouse import wait_for_lock

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
        _ensure_state(duck, tables)
        result.source_as_of = _source_as_of(duck)
        while True:
            try:
                plans = _attempt(
                    duck,
                    target,
                    result,
                    started,
                    dry_run,
                    tables,
                    source_schema,
                    on_table_applied,
                )
                break
            except Exception as e:
                if not is_transient(e):
                    raise
                if result.attempts >= retry.attempts:
                    result.status = "failed"
                    result.error = _scrub(target, _safe_error(e))
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
                    _scrub(target, _safe_error(e)),
                    wait,
                )
                time.sleep(wait)
                result.retry_waits.append(wait)
                result.attempts += 1
        if plans is None:
            return _finish(result, started)
        lap = time.perf_counter()
        _save_snapshot(duck, plans, result.run_id)
        result.lap("snapshot", lap)
        return _finish(result, started)
    finally:
        duck.close()


def _attempt(
    duck, target, result, started, dry_run, tables, source_schema, on_table_applied
) -> list[_Plan] | None:
    """One try against the target; the plans applied, or None when nothing was written."""
    committed = list(result.tables)  # what an earlier attempt applied, if it did
    result.tables.clear()
    result.rejections.clear()
    applier = _applier(target, create=not dry_run)
    with applier:
        applier.ensure_tables(tables, create=not dry_run)
        last = applier.last_success()
        state_run = duck.execute("select run_id from st.sync_state").fetchall()[0][0]
        lap = result.lap("prepare", started)
        if last is not None and last.run_id == result.run_id:
            # An earlier attempt committed but lost its answer: keep its counts.
            _reload_snapshot(duck, applier, tables, last.run_id)
            result.tables[:] = committed
            result.reconciled = True
            logger.info("sync %s: committed by an earlier attempt", result.run_id)
            return None
        if last is None and state_run is None:
            pass  # a first sync: both sides empty
        elif last is None or state_run != last.run_id:
            _reload_snapshot(duck, applier, tables, last.run_id if last else None)
            result.reconciled = True
            lap = result.lap("reconcile", lap)
        plans = [_plan(duck, spec, source_schema, result) for spec in tables]
        lap = result.lap("diff", lap)
        if dry_run:
            return None
        # Rejections are kept for the latest sync only, so a key that left the
        # exports (an opted-out or deleted user) does not stay in the target.
        stale = applier.stored_rejections() != _rejection_rows(result)
        if result.changes == 0 and not stale:
            result.status = "unchanged"
            return None
        for plan in plans:
            _read_changes(duck, plan)
        lap = result.lap("read", lap)

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
            result.error = _scrub(target, _safe_error(e))
            result.finished_at = datetime.now(UTC).replace(tzinfo=None)
            if isinstance(e, Exception):
                _record_failure(applier, result)
                raise SyncError(result.error) from e
            raise
    return plans


def _scrub(target: Target, text: str) -> str:
    return target.scrub(text) if isinstance(target, PostgresTarget) else text


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


def _source_as_of(duck: duckdb.DuckDBPyConnection) -> datetime | None:
    exists = duck.execute(
        "select count(*) from information_schema.columns where table_catalog = 'wh' "
        "and table_schema = 'marts' and table_name = 'user_lifecycle' "
        "and column_name = 'as_of_at'"
    ).fetchall()[0][0]
    if not exists:
        return None
    return duck.execute("select max(as_of_at) from wh.marts.user_lifecycle").fetchall()[0][0]


def _ensure_state(duck: duckdb.DuckDBPyConnection, tables: Sequence[TableSpec]) -> None:
    duck.execute("create table if not exists st.sync_state (run_id varchar, saved_at timestamp)")
    if duck.execute("select count(*) from st.sync_state").fetchall()[0][0] == 0:
        duck.execute("insert into st.sync_state values (null, null)")
    for spec in tables:
        cols = ", ".join(f"{_q(k)} {_TYPES[spec.column(k).type][0]}" for k in spec.key)
        duck.execute(f"create table if not exists st.{_q(spec.name)} ({cols}, _row_hash bigint)")


def _reload_snapshot(duck, applier, tables: Sequence[TableSpec], run_id: str | None) -> None:
    """Replace the local snapshot with the keys and hashes the target holds now."""
    duck.execute("begin")
    for spec in tables:
        duck.execute(f"delete from st.{_q(spec.name)}")
        applier.read_state(duck, spec, f"st.{_q(spec.name)}")
    duck.execute("update st.sync_state set run_id = ?, saved_at = now()", [run_id])
    duck.execute("commit")


def _stage_expression(spec: TableSpec, column: Column) -> str:
    cast = _TYPES[column.type][0]
    expr = f"cast({_q(column.name)} as {cast})"
    if column.type == "text":
        # Empty text travels as null: one spelling for every target and CSV.
        expr = f"nullif({expr}, '')"
    return f"{expr} as {_q(column.name)}"


def _reject_expression(spec: TableSpec) -> str:
    whens = []
    for c in spec.columns:
        if not c.nullable or c.name in spec.key:
            whens.append(f"when {_q(c.name)} is null then 'null value in {c.name}'")
    for c in spec.columns:
        if c.type == "text":
            whens.append(f"when contains({_q(c.name)}, chr(0)) then 'NUL character in {c.name}'")
    for r in spec.rules:
        whens.append(f"when not coalesce({r.condition}, true) then '{r.reason}'")
    return f"case {' '.join(whens)} end"


def _plan(duck, spec: TableSpec, source_schema: str, result: SyncResult) -> _Plan:
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
    keys = ", ".join(_q(k) for k in spec.key)
    staged = ", ".join(_stage_expression(spec, c) for c in spec.columns)
    source = f"select {staged} from wh.{_q(source_schema)}.{_q(spec.name)}"
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
    counts = dict(duck.execute(f"select op, count(*) from {delta} group by op").fetchall())
    source_rows, valid, rejected = duck.execute(
        f"select count(*), count(*) filter (where _reject is null), "
        f"count(*) filter (where _reject is not null) from {src}"
    ).fetchall()[0]
    snapshot_rows = duck.execute(f"select count(*) from st.{_q(spec.name)}").fetchall()[0][0]
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
    if rejected:
        rows = duck.execute(
            f"select {keys}, _reject from {src} where _reject is not null "
            f"order by {keys} nulls first limit {_MAX_REJECTIONS_KEPT}"
        ).fetchall()
        result.rejections.extend(
            Rejection(spec.name, dict(zip(spec.key, r[:-1], strict=True)), r[-1]) for r in rows
        )
    result.tables.append(t)
    return _Plan(spec, t, src, delta, source, all_inserts=snapshot_rows == 0 and rejected == 0)


def _build_delta(duck, spec: TableSpec, src: str, delta: str) -> None:
    keys = ", ".join(_q(k) for k in spec.key)
    # A rejected key keeps its previous version in the target: not deleted either.
    duck.execute(
        f"""
        create or replace table {delta} as
        select {", ".join(f"coalesce(s.{_q(k)}, p.{_q(k)}) as {_q(k)}" for k in spec.key)},
            case when p._row_hash is null then 'insert'
                 when s._row_hash is null then 'delete' else 'update' end as op,
            s._row_hash
        from (select {keys}, _row_hash from {src} where _reject is null) as s
        full join st.{_q(spec.name)} as p on {_match("s", "p", spec.key)}
        where s._row_hash is distinct from p._row_hash
          and not (s._row_hash is null and exists (
              select 1 from {src} as r
              where r._reject is not null and {_match("r", "p", spec.key)}))
        """
    )


def _match(left: str, right: str, key: Sequence[str]) -> str:
    return " and ".join(f"{left}.{_q(k)} = {right}.{_q(k)}" for k in key)


def _hash_expression(spec: TableSpec, alias: str = "") -> str:
    cols = ", ".join(f"{alias}{_q(c)}" for c in spec.column_names)
    return f"(hash({cols}) >> 1)::bigint"


def _rows_query(plan: _Plan, op: str, *, for_sqlite: bool = False) -> str:
    """The full rows of one operation with their hash (in key order for SQLite)."""
    spec = plan.spec
    cols = []
    for c in spec.columns:
        ref = f"s.{_q(c.name)}"
        if for_sqlite and c.type == "timestamp":
            ref = f"cast({ref} as varchar)"
        cols.append(ref)
    order = f" order by {', '.join(f's.{_q(k)}' for k in spec.key)}" if for_sqlite else ""
    if op == "insert" and plan.all_inserts:
        # A first sync without rejections: every source row, no join needed.
        return (
            f"select {', '.join(cols)}, {_hash_expression(spec, 's.')} "
            f"from ({plan.source}) as s{order}"
        )
    return (
        f"select {', '.join(cols)}, s._row_hash from {plan.changes} as s where op = '{op}'{order}"
    )


def _read_changes(duck, plan: _Plan) -> None:
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


def _keys_query(plan: _Plan, op: str) -> str:
    keys = ", ".join(_q(k) for k in plan.spec.key)
    return f"select {keys} from {plan.delta} where op = '{op}' order by {keys}"


def _save_snapshot(duck, plans: Sequence[_Plan], run_id: str) -> None:
    duck.execute("begin")
    for plan in plans:
        spec = plan.spec
        keys = ", ".join(_q(k) for k in spec.key)
        duck.execute(
            f"delete from st.{_q(spec.name)} as p using {plan.delta} as d "
            f"where d.op in ('update', 'delete') and {_match('p', 'd', spec.key)}"
        )
        duck.execute(
            f"insert into st.{_q(spec.name)} select {keys}, _row_hash "
            f"from {plan.delta} where op in ('insert', 'update')"
        )
    duck.execute("update st.sync_state set run_id = ?, saved_at = now()", [run_id])
    duck.execute("commit")


def last_successful_sync(target: Target | None = None) -> LastSync | None:
    """The target's latest successful sync with the row counts it left, if any."""
    target = target or target_from_url()
    if isinstance(target, SqliteTarget) and not target.path.exists():
        return None
    with _applier(target, create=False) as applier:
        if not applier.has_history():
            return None
        return applier.last_success()


def _applier(target: Target, create: bool = True):
    if isinstance(target, SqliteTarget):
        return _SqliteApplier(target, create)
    if isinstance(target, PostgresTarget):
        return _PostgresApplier(target)
    raise TypeError(f"unsupported target {target!r}")


class _Applier:
    kind: str

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _history_ddl(self) -> list[str]:
        return [
            _ddl(self.kind, self.qualify("sync_history"), _HISTORY_COLUMNS, ("run_id",)),
            _ddl(
                self.kind,
                self.qualify("sync_history_tables"),
                _HISTORY_TABLE_COLUMNS,
                ("run_id", "table_name"),
            ),
            _ddl(self.kind, self.qualify("sync_rejections"), _REJECTION_COLUMNS, ()),
        ]

    def _table_ddl(self, spec: TableSpec) -> str:
        return _ddl(
            self.kind,
            self.qualify(spec.name),
            _table_columns(spec),
            spec.key,
            [_check_sql(spec, r) for r in spec.rules],
        )

    def _history_rows(self, result: SyncResult):
        result.finished_at = result.finished_at or datetime.now(UTC).replace(tzinfo=None)
        history = (
            result.run_id,
            _ts(result.started_at, self.kind),
            _ts(result.finished_at, self.kind),
            result.status,
            _ts(result.source_as_of, self.kind),
            result.total("inserted"),
            result.total("updated"),
            result.total("deleted"),
            result.total("unchanged"),
            result.total("rejected"),
            result.error,
        )
        tables = [
            (
                result.run_id,
                t.table,
                t.inserted,
                t.updated,
                t.deleted,
                t.unchanged,
                t.rejected,
                t.row_count,
            )
            for t in result.tables
        ]
        rejections = [
            (result.run_id, r.table, json.dumps(r.key, default=str, sort_keys=True), r.reason)
            for r in result.rejections
        ]
        return history, tables, rejections

    def _last_success_from(self, rows, counts) -> LastSync | None:
        if not rows:
            return None
        run_id, finished_at, as_of = rows[0]
        return LastSync(run_id, _parse_ts(finished_at), _parse_ts(as_of), dict(counts))


def _ts(value: datetime | None, kind: str):
    if value is None:
        return None
    return value.isoformat(sep=" ") if kind == "sqlite" else value


def _parse_ts(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class _SqliteApplier(_Applier):
    kind = "sqlite"

    def __init__(self, target: SqliteTarget, create: bool = True):
        # A dry run against a file that does not exist yet must not create it.
        if create or target.path.exists():
            self.con = target.connect()
        else:
            self.con = sqlite3.connect(":memory:", isolation_level=None)

    def close(self) -> None:
        self.con.close()

    def qualify(self, name: str) -> str:
        return _q(name)

    def has_history(self) -> bool:
        return bool(
            self.con.execute(
                "select count(*) from sqlite_master where type = 'table' and name = 'sync_history'"
            ).fetchone()[0]
        )

    def ensure_tables(self, tables: Sequence[TableSpec], create: bool) -> None:
        existing = {r[0] for r in self.con.execute("select name from sqlite_master")}
        wanted = ["sync_history", "sync_history_tables", "sync_rejections"]
        wanted += [t.name for t in tables]
        if not create or set(wanted) <= existing:
            return
        self.con.execute("begin immediate")
        for stmt in [*self._history_ddl(), *(self._table_ddl(t) for t in tables)]:
            self.con.execute(stmt)
        self.con.execute("commit")

    def last_success(self) -> LastSync | None:
        if not self.has_history():
            return None
        rows = self.con.execute(
            "select run_id, finished_at, source_as_of from sync_history "
            "where status = 'success' order by started_at desc, run_id desc limit 1"
        ).fetchall()
        counts = self.con.execute(
            "select table_name, row_count from sync_history_tables where run_id = ?",
            [rows[0][0]] if rows else [""],
        ).fetchall()
        return self._last_success_from(rows, counts)

    def read_state(self, duck, spec: TableSpec, into: str) -> None:
        exists = self.con.execute(
            "select count(*) from sqlite_master where type = 'table' and name = ?", [spec.name]
        ).fetchone()[0]
        if not exists:
            return
        import pyarrow as pa

        cols = [*spec.key, "_row_hash"]
        cur = self.con.execute(f"select {', '.join(_q(c) for c in cols)} from {_q(spec.name)}")
        while rows := cur.fetchmany(_BATCH_ROWS):
            batch = pa.table(list(zip(*rows, strict=True)), names=cols)  # noqa: F841 (DuckDB reads it)
            duck.execute(f"insert into {into} select * from batch")

    def apply(self, duck, plans, result: SyncResult, last, on_table_applied) -> None:
        con = self.con
        con.execute("begin immediate")
        try:
            if self.last_success() != last:
                raise SyncError("another sync committed meanwhile; run again")
            for plan in plans:
                spec = plan.spec
                t = plan.result
                name = _q(spec.name)
                where = " and ".join(f"{_q(k)} = ?" for k in spec.key)
                if t.deleted:
                    for rows in _batches(duck, _keys_query(plan, "delete")):
                        con.executemany(f"delete from {name} where {where}", rows)
                if t.updated:
                    sets = ", ".join(f"{_q(c)} = ?" for c in [*spec.value_columns, "_row_hash"])
                    names = spec.column_names
                    order = [names.index(c) for c in spec.value_columns]
                    order += [len(names)] + [names.index(k) for k in spec.key]
                    for rows in _batches(duck, _rows_query(plan, "update", for_sqlite=True)):
                        con.executemany(
                            f"update {name} set {sets} where {where}",
                            [[r[i] for i in order] for r in rows],
                        )
                if t.inserted:
                    marks = ", ".join("?" for _ in range(len(spec.columns) + 1))
                    for rows in _batches(duck, _rows_query(plan, "insert", for_sqlite=True)):
                        con.executemany(f"insert into {name} values ({marks})", rows)
                if on_table_applied:
                    on_table_applied(spec.name)
            history, tables, rejections = self._history_rows(result)
            con.execute(
                f"insert into sync_history values ({', '.join('?' * len(history))})", history
            )
            con.executemany(
                "insert into sync_history_tables values (?, ?, ?, ?, ?, ?, ?, ?)", tables
            )
            con.execute("delete from sync_rejections")
            con.executemany("insert into sync_rejections values (?, ?, ?, ?)", rejections)
            con.execute("commit")
        except BaseException:
            if con.in_transaction:
                con.execute("rollback")
            raise
        # Fold the WAL into the file and empty it, so the pages of deleted rows
        # do not linger there; a reader holding an old snapshot only delays it.
        con.execute("pragma busy_timeout = 2000")
        con.execute("pragma wal_checkpoint(truncate)").fetchall()
        con.execute("pragma busy_timeout = 60000")

    def stored_rejections(self) -> set[tuple[str, str, str]]:
        rows = self.con.execute("select table_name, row_key, reason from sync_rejections")
        return {tuple(r) for r in rows.fetchall()}

    def record_failure(self, result: SyncResult) -> None:
        if not self.has_history():
            return
        history, _, _ = self._history_rows(result)
        self.con.execute(
            f"insert into sync_history values ({', '.join('?' * len(history))})", history
        )


def _batches(duck, query: str) -> Iterator[list[tuple]]:
    cur = duck.cursor()
    try:
        cur.execute(query)
        while rows := cur.fetchmany(_BATCH_ROWS):
            yield rows
    finally:
        cur.close()


class _PostgresApplier(_Applier):
    kind = "postgresql"

    def __init__(self, target: PostgresTarget):
        self.target = target
        self.schema = target.schema
        self.con = target.connect()

    def close(self) -> None:
        self.con.close()

    def qualify(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    def _exists(self, name: str) -> bool:
        with self.con.cursor() as cur:
            cur.execute(
                "select count(*) from information_schema.tables "
                "where table_schema = %s and table_name = %s",
                [self.schema, name],
            )
            found = cur.fetchone()[0] > 0
        self.con.rollback()
        return found

    def has_history(self) -> bool:
        return self._exists("sync_history")

    def ensure_tables(self, tables: Sequence[TableSpec], create: bool) -> None:
        wanted = ["sync_history", "sync_history_tables", "sync_rejections"]
        wanted += [t.name for t in tables]
        if not create or all(self._exists(n) for n in wanted):
            return
        with self.con, self.con.cursor() as cur:
            cur.execute(f"create schema if not exists {_q(self.schema)}")
            for stmt in [*self._history_ddl(), *(self._table_ddl(t) for t in tables)]:
                cur.execute(stmt)

    def last_success(self) -> LastSync | None:
        if not self.has_history():
            return None
        with self.con.cursor() as cur:
            cur.execute(
                f"select run_id, finished_at, source_as_of from {self.qualify('sync_history')} "
                "where status = 'success' order by started_at desc, run_id desc limit 1"
            )
            rows = cur.fetchall()
            cur.execute(
                f"select table_name, row_count from {self.qualify('sync_history_tables')} "
                "where run_id = %s",
                [rows[0][0] if rows else ""],
            )
            counts = cur.fetchall()
        if not self.con.autocommit:
            self.con.rollback()
        return self._last_success_from(rows, counts)

    def read_state(self, duck, spec: TableSpec, into: str) -> None:
        if not self._exists(spec.name):
            return
        import tempfile

        cols = ", ".join(_q(c) for c in [*spec.key, "_row_hash"])
        types = {k: _TYPES[spec.column(k).type][0] for k in spec.key} | {"_row_hash": "bigint"}
        with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
            with self.con.cursor() as cur:
                cur.copy_expert(
                    f"copy (select {cols} from {self.qualify(spec.name)}) to stdout "
                    "with (format csv)",
                    tmp,
                )
            self.con.rollback()
            tmp.flush()
            duck.execute(
                f"insert into {into} select * from read_csv(?, header = false, "
                f"columns = {_duck_struct(types)}, nullstr = '', quote = '\"')",
                [tmp.name],
            )

    def apply(self, duck, plans, result: SyncResult, last, on_table_applied) -> None:
        con = self.con
        lock = int(hashlib.sha256(self.target.describe().encode()).hexdigest()[:15], 16)
        try:
            with con.cursor() as cur:
                # One sync at a time per target schema; a concurrent one waits here.
                cur.execute("select pg_advisory_xact_lock(%s)", [lock])
                if self.last_success_in_tx(cur) != (last.run_id if last else None):
                    raise SyncError("another sync committed meanwhile; run again")
                cur.execute("set local maintenance_work_mem = '512MB'")
                for plan in plans:
                    self._apply_table(cur, duck, plan)
                    if on_table_applied:
                        on_table_applied(plan.spec.name)
                history, tables, rejections = self._history_rows(result)
                cur.execute(
                    f"insert into {self.qualify('sync_history')} values "
                    f"({', '.join(['%s'] * len(history))})",
                    history,
                )
                cur.executemany(
                    f"insert into {self.qualify('sync_history_tables')} values "
                    f"({', '.join(['%s'] * 8)})",
                    tables,
                )
                cur.execute(f"delete from {self.qualify('sync_rejections')}")
                cur.executemany(
                    f"insert into {self.qualify('sync_rejections')} values (%s, %s, %s, %s)",
                    rejections,
                )
            con.commit()
        except BaseException:
            import psycopg2

            try:
                con.rollback()
            except psycopg2.Error:
                pass  # the connection is gone: the server rolled the transaction back
            raise

    def stored_rejections(self) -> set[tuple[str, str, str]]:
        with self.con.cursor() as cur:
            cur.execute(
                f"select table_name, row_key, reason from {self.qualify('sync_rejections')}"
            )
            rows = {tuple(r) for r in cur.fetchall()}
        self.con.rollback()
        return rows

    def last_success_in_tx(self, cur) -> str | None:
        cur.execute(
            f"select run_id from {self.qualify('sync_history')} where status = 'success' "
            "order by started_at desc, run_id desc limit 1"
        )
        row = cur.fetchone()
        return row[0] if row else None

    def _apply_table(self, cur, duck, plan: _Plan) -> None:
        spec, t = plan.spec, plan.result
        table = self.qualify(spec.name)
        keys = [_q(k) for k in spec.key]
        match = " and ".join(f"t.{k} = c.{k}" for k in keys)
        if t.deleted:
            cur.execute(
                f"create temp table _crm_delete on commit drop as "
                f"select {', '.join(keys)} from {table} limit 0"
            )
            self._copy(cur, duck, _keys_query(plan, "delete"), "_crm_delete", t.deleted)
            cur.execute(f"delete from {table} as t using _crm_delete as c where {match}")
            _expect(cur.rowcount, t.deleted, f"{spec.name} deletes")
            cur.execute("drop table _crm_delete")
        if t.updated:
            cur.execute(
                f"create temp table _crm_update on commit drop as select * from {table} limit 0"
            )
            self._copy(cur, duck, _rows_query(plan, "update"), "_crm_update", t.updated)
            sets = ", ".join(f"{_q(c)} = c.{_q(c)}" for c in [*spec.value_columns, "_row_hash"])
            cur.execute(f"update {table} as t set {sets} from _crm_update as c where {match}")
            _expect(cur.rowcount, t.updated, f"{spec.name} updates")
            cur.execute("drop table _crm_update")
        if t.inserted:
            cur.execute(f"select not exists (select 1 from {table})")
            bulk = cur.fetchone()[0] and t.inserted >= _BULK_LOAD_ROWS
            pkey = _q(f"{spec.name}_pkey")
            if bulk:
                # An empty table: build the key index once, after the load. The
                # lock this takes only blocks readers of a table that is empty.
                cur.execute(f"alter table {table} drop constraint {pkey}")
            self._copy(cur, duck, _rows_query(plan, "insert"), table, t.inserted)
            if bulk:
                cur.execute(
                    f"alter table {table} add constraint {pkey} primary key ({', '.join(keys)})"
                )

    def _copy(self, cur, duck, query: str, into: str, expected: int) -> None:
        """Stream a DuckDB query into ``into`` with COPY: CSV made by Arrow in a thread."""
        import pyarrow.csv as pacsv

        read_fd, write_fd = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_fd, "wb") as sink:
                    reader = duck.cursor().sql(query).to_arrow_reader(_BATCH_ROWS)
                    writer = None
                    for batch in reader:
                        if writer is None:
                            writer = pacsv.CSVWriter(
                                sink,
                                batch.schema,
                                write_options=pacsv.WriteOptions(
                                    include_header=False, quoting_style="needed"
                                ),
                            )
                        writer.write_batch(batch)
                    if writer is not None:
                        writer.close()
            except BaseException as e:  # re-raised by the consumer below
                errors.append(e)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            with os.fdopen(read_fd, "rb") as source:
                cur.copy_expert(f"copy {into} from stdin with (format csv)", source, size=1 << 20)
        finally:
            producer.join()
        if errors:
            raise errors[0]
        # A producer that stopped early would leave a short COPY: never commit one.
        _expect(cur.rowcount, expected, f"rows copied into {into}")

    def record_failure(self, result: SyncResult) -> None:
        if not self.has_history():
            return
        history, _, _ = self._history_rows(result)
        with self.con, self.con.cursor() as cur:
            cur.execute(
                f"insert into {self.qualify('sync_history')} values "
                f"({', '.join(['%s'] * len(history))})",
                history,
            )


def _expect(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise SyncError(f"{what}: {actual} rows instead of {expected}")


def _duck_struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{identifier(k)}': '{v}'" for k, v in types.items()) + "}"


# ------------------------------------------------------------------ consent and deletion


@dataclass
class PseudonymisationReport:
    users: int
    rows: dict[str, int]


# Where a deleted user's id may still be, besides the deletion_request event.
_PERSONAL_SCHEMAS = ("raw", "intermediate", "marts", "ml", "exports")
# Sessions are keyed by actor (the user id when signed in) and their id hashes it.
_ACTOR_TABLES = {("intermediate", "int_sessions")}


def _remap_sessions(con: duckdb.DuckDBPyConnection) -> None:
    """Give a deleted user's sessions the ids a rebuild under the pseudonym computes.

    int_sessions names a session md5(actor_id | start in microseconds); the marts
    join plays to sessions on actor_id. Rewriting the actor without the ids would
    leave the real id in the actor column, and the next incremental run would
    rebuild the user's sessions under new ids that no stored play refers to.
    """
    present = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'intermediate' and table_name = 'int_sessions'"
    ).fetchall()[0][0]
    if not present:
        return
    con.execute(
        """
        create or replace temp table session_remap as
        select s.session_id as old_id,
            md5(p.pseudonym || '|' || cast(epoch_us(s.started_at) as varchar)) as new_id
        from intermediate.int_sessions as s
        join to_pseudonymise as p on s.actor_id = p.user_id
        """
    )
    with_sessions = con.execute(
        "select c.table_schema, c.table_name from information_schema.columns as c "
        "join information_schema.tables as t using (table_catalog, table_schema, table_name) "
        "where t.table_type = 'BASE TABLE' and c.column_name = 'session_id' and c.table_schema in "
        f"({', '.join('?' for _ in _PERSONAL_SCHEMAS)}) order by 1, 2",
        list(_PERSONAL_SCHEMAS),
    ).fetchall()
    for schema, table in with_sessions:
        con.execute(
            f"update {_q(schema)}.{_q(table)} as x set session_id = m.new_id "
            "from session_remap as m where x.session_id = m.old_id"
        )


def pseudonymise_deleted_users(warehouse_path: Path | str | None = None) -> PseudonymisationReport:
    """Replace the ids of users who asked for deletion everywhere in the warehouse.

    Policy (docs/crm-exports.md): the deletion_request event keeps the real id
    (the record that the request was honoured, and what keeps late events of the
    user out of every export); every other row of the user gets a random
    pseudonym, different at each pass and stored nowhere with the real id, and
    the device id goes the same way. Search text is dropped; rejected raw lines
    that mention the user are blanked. Row counts do not change, so the load
    reconciliation and content aggregates stay exact. ``raw.deleted_users``
    lists the pseudonyms (exports leave them out). Idempotent: a second run on
    the same data changes nothing.
    """
    from ottp.warehouse import connect

    warehouse_path = Path(warehouse_path or config.settings().warehouse_path)
    con = connect(warehouse_path)
    try:
        con.execute("create schema if not exists raw")
        con.execute(
            "create table if not exists raw.deleted_users ("
            "pseudonym varchar primary key, deletion_requested_at timestamp, "
            "pseudonymised_at timestamp not null, rows_pseudonymised bigint not null)"
        )
        has_events = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = 'events'"
        ).fetchall()[0][0]
        if not has_events:
            return PseudonymisationReport(0, {})
        tables = con.execute(
            "select c.table_schema, c.table_name, "
            "bool_or(c.column_name = 'device_id') as has_device "
            "from information_schema.columns as c "
            "join information_schema.tables as t using (table_catalog, table_schema, table_name) "
            "where t.table_type = 'BASE TABLE' and c.table_schema in "
            f"({', '.join('?' for _ in _PERSONAL_SCHEMAS)}) "
            "and not (c.table_schema = 'raw' and c.table_name = 'deleted_users') "
            "group by 1, 2 having bool_or(c.column_name = 'user_id') order by 1, 2",
            list(_PERSONAL_SCHEMAS),
        ).fetchall()
        con.execute("begin")
        # Users with a deletion request and any other trace of their real id.
        con.execute(
            """
            create or replace temp table to_pseudonymise as
            with deleted as (
                select user_id, min(occurred_at) as deletion_requested_at
                from raw.events
                where event_type = 'deletion_request' and user_id is not null
                group by user_id
            )
            select deleted.*,
                'deleted_' || replace(cast(gen_random_uuid() as varchar), '-', '') as pseudonym
            from deleted
            where exists (
                select 1 from raw.events as e
                where e.user_id = deleted.user_id and e.event_type <> 'deletion_request'
            )
            """
        )
        for schema, table, _ in tables:
            if (schema, table) == ("raw", "events"):
                continue
            con.execute(
                f"insert into to_pseudonymise "
                f"select distinct d.user_id, d.deletion_requested_at, "
                f"'deleted_' || replace(cast(gen_random_uuid() as varchar), '-', '') "
                f"from {_q(schema)}.{_q(table)} as x "
                f"join (select user_id, min(occurred_at) as deletion_requested_at "
                f"      from raw.events where event_type = 'deletion_request' group by 1) as d "
                f"on x.user_id = d.user_id "
                f"where d.user_id not in (select user_id from to_pseudonymise)"
            )
        users = con.execute("select count(*) from to_pseudonymise").fetchall()[0][0]
        rows: dict[str, int] = {}
        if users:
            _remap_sessions(con)
            for schema, table, has_device in tables:
                name = f"{_q(schema)}.{_q(table)}"
                sets = ["user_id = p.pseudonym"]
                if has_device:
                    sets.append("device_id = 'device_' || p.pseudonym")
                if (schema, table) in _ACTOR_TABLES:
                    # a signed-in user's actor id is their user id
                    sets.append("actor_id = p.pseudonym")
                keep = ""
                if (schema, table) == ("raw", "events"):
                    sets.append(
                        "properties = case when x.event_type = 'search' then null "
                        "else x.properties end"
                    )
                    keep = " and x.event_type <> 'deletion_request'"
                n = con.execute(
                    f"update {name} as x set {', '.join(sets)} from to_pseudonymise as p "
                    f"where x.user_id = p.user_id{keep}"
                ).fetchall()[0][0]
                if n:
                    rows[f"{schema}.{table}"] = n
            n = con.execute(
                "update raw.rejected_events as r set raw_line = null from to_pseudonymise as p "
                "where contains(r.raw_line, '\"' || p.user_id || '\"')"
            ).fetchall()[0][0]
            if n:
                rows["raw.rejected_events"] = n
            con.execute(
                "insert into raw.deleted_users "
                "select pseudonym, deletion_requested_at, now(), 0 from to_pseudonymise"
            )
        con.execute("commit")
        return PseudonymisationReport(users, rows)
    except BaseException:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass  # nothing begun yet
        raise
    finally:
        con.close()
