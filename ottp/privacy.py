"""Deleted users' privacy: their ids pseudonymised everywhere in the warehouse.

A user who asks for deletion keeps only the deletion_request event under the
real id; every other row in raw, intermediate, marts, ml and exports gets a
random pseudonym (``raw.deleted_users`` lists them, and the exports leave them
out). The policy is in docs/crm-exports.md; this runs before the export models
in every pipeline run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from ottp import config
from ottp.crm.contract import quote


@dataclass
class PseudonymisationReport:
    users: int
    rows: dict[str, int]


# Where a deleted user's id may still be, besides the deletion_request event.
_PERSONAL_SCHEMAS = ("raw", "intermediate", "marts", "ml", "exports")
# Sessions are keyed by actor (the user id when signed in) and their id hashes it.
_ACTOR_TABLES = {("intermediate", "int_sessions")}
_NEW_PSEUDONYM = "'deleted_' || replace(cast(gen_random_uuid() as varchar), '-', '')"


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
        _ensure_deleted_users(con)
        has_events = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = 'events'"
        ).fetchall()[0][0]
        if not has_events:
            return PseudonymisationReport(0, {})
        tables = _tables_with_user_ids(con)
        con.execute("begin")
        _select_users(con, tables)
        users = con.execute("select count(*) from to_pseudonymise").fetchall()[0][0]
        rows: dict[str, int] = {}
        if users:
            _remap_sessions(con)
            rows = _rewrite(con, tables)
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


def _ensure_deleted_users(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    con.execute(
        "create table if not exists raw.deleted_users ("
        "pseudonym varchar primary key, deletion_requested_at timestamp, "
        "pseudonymised_at timestamp not null, rows_pseudonymised bigint not null)"
    )


def _tables_with_user_ids(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, bool]]:
    """(schema, table, has a device_id) of every table holding a user_id."""
    return con.execute(
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


def _select_users(con: duckdb.DuckDBPyConnection, tables) -> None:
    """``to_pseudonymise``: users with a deletion request and any other trace of their id."""
    con.execute(
        f"""
        create or replace temp table to_pseudonymise as
        with deleted as (
            select user_id, min(occurred_at) as deletion_requested_at
            from raw.events
            where event_type = 'deletion_request' and user_id is not null
            group by user_id
        )
        select deleted.*,
            {_NEW_PSEUDONYM} as pseudonym
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
            f"{_NEW_PSEUDONYM} "
            f"from {quote(schema)}.{quote(table)} as x "
            f"join (select user_id, min(occurred_at) as deletion_requested_at "
            f"      from raw.events where event_type = 'deletion_request' group by 1) as d "
            f"on x.user_id = d.user_id "
            f"where d.user_id not in (select user_id from to_pseudonymise)"
        )


def _rewrite(con: duckdb.DuckDBPyConnection, tables) -> dict[str, int]:
    """Give every row of the selected users their pseudonym; rows changed per table."""
    rows: dict[str, int] = {}
    for schema, table, has_device in tables:
        name = f"{quote(schema)}.{quote(table)}"
        sets = ["user_id = p.pseudonym"]
        if has_device:
            sets.append("device_id = 'device_' || p.pseudonym")
        if (schema, table) in _ACTOR_TABLES:
            # a signed-in user's actor id is their user id
            sets.append("actor_id = p.pseudonym")
        keep = ""
        if (schema, table) == ("raw", "events"):
            sets.append(
                "properties = case when x.event_type = 'search' then null else x.properties end"
            )
            keep = " and x.event_type <> 'deletion_request'"
        n = con.execute(
            f"update {name} as x set {', '.join(sets)} from to_pseudonymise as p "
            f"where x.user_id = p.user_id{keep}"
        ).fetchall()[0][0]
        if n:
            rows[f"{schema}.{table}"] = n
    n = _scrub_rejected_lines(con)
    if n:
        rows["raw.rejected_events"] = n
    return rows


def _scrub_rejected_lines(con: duckdb.DuckDBPyConnection) -> int:
    """Drop every rejected raw line that holds a selected user's id in quotes.

    A line holds ``"<id>"`` exactly when ``<id>`` (with no quote in it) is one of the
    pieces between two consecutive quotes of the line, so the lines are split at their
    quotes once and the pieces joined to the ids: one pass over the rejected lines
    whatever the number of users, where a search for each id in each line costs
    lines x users. An id with a quote in it is searched for as it is.
    """
    return con.execute(
        """
        update raw.rejected_events as r set raw_line = null
        where r.raw_line is not null and (
            r.rowid in (
                select pieces.line_id
                from (
                    select rowid as line_id,
                           unnest(list_slice(string_split(raw_line, '"'), 2, -2)) as piece
                    from raw.rejected_events
                    where raw_line is not null and contains(raw_line, '"')
                ) as pieces
                join to_pseudonymise as p on pieces.piece = p.user_id
            )
            or exists (
                select 1 from to_pseudonymise as p
                where contains(p.user_id, '"')
                    and contains(r.raw_line, '"' || p.user_id || '"')
            )
        )
        """
    ).fetchall()[0][0]


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
            f"update {quote(schema)}.{quote(table)} as x set session_id = m.new_id "
            "from session_remap as m where x.session_id = m.old_id"
        )
