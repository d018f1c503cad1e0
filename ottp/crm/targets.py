"""The CRM databases the sync writes to: targets, connections, retries, table DDL.

An embedded SQLite file (default, ``$OTTP_DATA_DIR/crm/crm.sqlite``) or
PostgreSQL when ``CRM_DATABASE_URL`` is set (``ottp.config`` reads it). This
module opens connections (never printing a password), tells an unreachable
target (retried under :class:`RetryPolicy`) from a refusal, and writes the
DDL of the mirrored tables and of the sync's own history tables.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from ottp import config
from ottp.crm.contract import POSTGRESQL, SQL_TYPES, SQLITE, TableSpec, identifier, quote

DEFAULT_PG_SCHEMA = "crm"


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
    """The policy: the defaults above, or the environment's overrides (ottp.config)."""
    default = RetryPolicy()
    attempts, first_delay_s, max_delay_s = config.crm_sync_retry(
        default.attempts, default.first_delay_s, default.max_delay_s
    )
    return RetryPolicy(attempts, first_delay_s, max_delay_s)


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

    def scrub(self, text: str) -> str:
        """``text`` without this target's secrets (an SQLite file has none)."""
        return text


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
    url = url or config.crm_database_url()
    if not url:
        return SqliteTarget(config.settings().data_dir / "crm" / "crm.sqlite")
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteTarget(url.split("sqlite:///", 1)[1] if "sqlite:///" in url else "")
    if scheme in ("postgresql", "postgres"):
        return PostgresTarget(url, schema or config.crm_database_schema(DEFAULT_PG_SCHEMA))
    raise ValueError(f"unsupported CRM target scheme {scheme!r} (sqlite or postgresql)")


def default_state_dir() -> Path:
    """Where the local snapshots of synced keys and hashes live, one file per target."""
    return config.settings().data_dir / "crm" / "state"


# ------------------------------------------------------------------ target tables

# The sync's own bookkeeping in the target: its runs, their counts, the rejected rows.
HISTORY_COLUMNS = (
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
HISTORY_TABLE_COLUMNS = (
    ("run_id", "text", False),
    ("table_name", "text", False),
    ("inserted", "integer", False),
    ("updated", "integer", False),
    ("deleted", "integer", False),
    ("unchanged", "integer", False),
    ("rejected", "integer", False),
    ("row_count", "integer", False),
)
REJECTION_COLUMNS = (
    ("run_id", "text", False),
    ("table_name", "text", False),
    ("row_key", "text", False),
    ("reason", "text", False),
)


def ddl(kind: str, qualified: str, columns, key: Sequence[str], checks=()) -> str:
    """``create table if not exists`` for (name, contract type, nullable) columns."""
    idx = SQLITE if kind == "sqlite" else POSTGRESQL
    parts, checks = [], list(checks)
    for name, type_, nullable in columns:
        sql_type = SQL_TYPES[type_][idx]
        parts.append(f"{quote(name)} {sql_type}{'' if nullable else ' not null'}")
        if kind == "sqlite" and type_ == "boolean":
            checks.append(f"({quote(name)} in (0, 1))")
    parts.extend(f"check {c}" for c in checks)
    if key:
        parts.append(f"primary key ({', '.join(quote(k) for k in key)})")
    suffix = " without rowid" if kind == "sqlite" and key else ""
    return f"create table if not exists {qualified} ({', '.join(parts)}){suffix}"


def table_columns(spec: TableSpec):
    """The mirrored table's columns: the contract's (the row hash last), keys not null."""
    return [(c.name, c.type, c.nullable and c.name not in spec.key) for c in spec.columns]


def to_target_timestamp(value: datetime | None, kind: str):
    """A timestamp as the target stores it (SQLite: ISO text)."""
    if value is None:
        return None
    return value.isoformat(sep=" ") if kind == "sqlite" else value


def from_target_timestamp(value) -> datetime | None:
    """A timestamp read back from the target."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
