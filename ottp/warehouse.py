"""The DuckDB warehouse file: opening it, and waiting for the one process that may write it.

DuckDB lets one process hold a database file for writing; every writer here (the
loader, dbt through Dagster's pool, the ML assets, the sync's pseudonymisation)
opens the file through :func:`connect`, which waits for the holder to finish
instead of failing at once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb

logger = logging.getLogger(__name__)

# How long a loader waits for another process to release the warehouse file
# (DuckDB allows one writing process) before it gives up with WarehouseBusy.
LOCK_WAIT_S = 300.0


class WarehouseBusy(RuntimeError):
    """Another process kept the warehouse file open for longer than the wait allowed."""


def is_lock_conflict(exc: BaseException) -> bool:
    """True for DuckDB's refusal to open a file another process holds."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def wait_for_lock(open_, what: str, wait_s: float):
    """Call ``open_()`` until no other process holds the file, for at most ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    logged = False
    while True:
        try:
            return open_()
        except duckdb.IOException as e:
            if not is_lock_conflict(e) or wait_s <= 0:
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseBusy(
                    f"{what} is held by another process after waiting {wait_s:g} s: "
                    f"{str(e).splitlines()[0]}"
                ) from None
            if not logged:
                logger.info("%s is held by another process; waiting", what)
                logged = True
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)


def connect(
    warehouse_path: Path, read_only: bool = False, wait_s: float = 0.0
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; with ``wait_s``, wait that long for another writer to finish."""
    Path(warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    con = wait_for_lock(
        lambda: duckdb.connect(str(warehouse_path), read_only=read_only),
        f"warehouse {warehouse_path}",
        wait_s,
    )
    con.execute("set TimeZone = 'UTC'")
    # Row order within a table carries no meaning here; not keeping it saves memory.
    con.execute("set preserve_insertion_order = false")
    return con
