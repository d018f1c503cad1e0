"""The suite's PostgreSQL server: a database of its own per run, dropped after, and the
environment that points dbt's ``postgres`` target at it (the sync and dbt-on-PostgreSQL).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

from benchmarks.suite_process import log


def _admin(url: str):
    import psycopg2

    con = psycopg2.connect(url, connect_timeout=5)
    con.autocommit = True
    return con


def create_database(url: str) -> str | None:
    """A fresh database for this run, or None when the server cannot be reached."""
    try:
        import psycopg2  # noqa: F401

        con = _admin(url)
    except Exception as e:  # noqa: BLE001 - any failure means: no PostgreSQL peer
        log(f"PostgreSQL not reachable at {describe(url)}: {str(e).strip()[:200]}")
        return None
    name = f"ottp_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with con.cursor() as cur:
        cur.execute(f'create database "{name}"')  # our own generated name
    con.close()
    return name


def drop_database(url: str, name: str) -> None:
    try:
        con = _admin(url)
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        con.close()
    except Exception as e:  # noqa: BLE001 - report, never mask the run's own result
        log(f"could not drop PostgreSQL database {name}: {e}")


def url_for(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


def describe(url: str) -> str:
    p = urlsplit(url)
    return f"{p.hostname or 'localhost'}:{p.port or 5432}"


def dbt_env(env: dict, url: str, database: str) -> dict:
    p = urlsplit(url)
    out = dict(
        env,
        OTTP_DBT_TARGET="postgres",
        OTTP_PG_DATABASE=database,
        OTTP_PG_HOST=p.hostname or "127.0.0.1",
        OTTP_PG_PORT=str(p.port or 5432),
    )
    if p.username:
        out["OTTP_PG_USER"] = p.username
    if p.password:
        out["OTTP_PG_PASSWORD"] = p.password
    return out
