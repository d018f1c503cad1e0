"""Quality gates on the CRM export tables: one Great Expectations 1.x suite per table.

A wrong row sent to a CRM is a wrong e-mail to a real person, so every export
table is validated before a sync may read it (docs/crm-exports.md lists the
expectations). Each suite runs on a *validation frame* that DuckDB computes
from the warehouse: the joins against plays, the catalog, consent and the
previous sync happen in SQL, and only one narrow row per checked entity
reaches pandas (one per contact for crm_contacts and crm_recommendations, one
per row for the smaller tables). GX 1.24 has no working SQL path for DuckDB:
the duckdb-engine dialect (0.17.0) fails column reflection under SQLAlchemy
2.1, and GX's SQL engine loses the rows of a dialect it does not know.

This module owns the frames, the GX run and its results; the expectations of
each suite and their limits are in ``ottp.crm.suites``. Results are kept as
JSON under ``$OTTP_DATA_DIR/quality/<table>/`` and summarised (failing
expectations with sample rows) for the Dagster checks.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ottp import config
from ottp.crm.appliers import last_successful_sync
from ottp.crm.contract import identifier
from ottp.crm.suites import Limits, default_limits, suite_expectations
from ottp.crm.sync import LOCK_WAIT_S
from ottp.crm.targets import LastSync, Target

config.quiet_great_expectations()

_SAMPLE_ROWS = 5
_RESULTS_KEPT = 50


# ----------------------------------------------------------------- validation frames

_CONTACTABLE = """
    select users.user_id
    from marts.users as users
    left join __DELETED_USERS__ as deleted_users on users.user_id = deleted_users.pseudonym
    where users.is_contactable and deleted_users.pseudonym is null
"""

# One query per table: the frame the suite validates. Only our own SQL here.
FRAMES = {
    "crm_contacts": f"""
        with recommendation_counts as (
            select user_id, count(*) as n from exports.crm_recommendations group by user_id
        ), contactable as ({_CONTACTABLE})
        select
            c.user_id, c.lifecycle_stage, c.highest_segment, c.subscription_status,
            c.churn_risk, c.churn_risk_band,
            coalesce(r.n, 0) as exported_recommendations,
            k.user_id is not null as may_be_contacted,
            (select max(as_of_at) from marts.user_lifecycle) as as_of_at
        from exports.crm_contacts as c
        left join recommendation_counts as r on c.user_id = r.user_id
        left join contactable as k on c.user_id = k.user_id
    """,
    # One row per user of crm_recommendations: counts of each defect, with the
    # offending titles as sample values.
    "crm_recommendations": f"""
        with recs as (
            select * from exports.crm_recommendations
        ), watched as (
            select distinct user_id, title_id from marts.plays where is_valid_play
        ), catalog as (
            select title_id from marts.titles where is_available
        ), contactable as ({_CONTACTABLE}),
        flagged as (
            select recs.*,
                w.title_id is not null as is_watched,
                c.title_id is null as is_outside_catalog
            from recs
            left join watched as w on recs.user_id = w.user_id and recs.title_id = w.title_id
            left join catalog as c on recs.title_id = c.title_id
        )
        select
            f.user_id,
            count(*) as recommendation_count,
            count(*) - count(distinct f.rank) as duplicate_rank_count,
            count(*) - count(distinct f.title_id) as duplicate_title_count,
            count(*) filter (where f.rank is null or f.title_id is null) as null_key_count,
            coalesce(max(f.rank), 0) - count(*) as rank_gap_count,
            count(*) filter (where f.is_watched) as watched_count,
            count(*) filter (where f.is_outside_catalog) as outside_catalog_count,
            string_agg(f.title_id, ',' order by f.rank) filter (where f.is_watched)
                as watched_title_ids,
            string_agg(coalesce(f.title_id, '(null)'), ',' order by f.rank)
                filter (where f.is_outside_catalog) as outside_catalog_title_ids,
            bool_or(k.user_id is not null) as may_be_contacted
        from flagged as f
        left join contactable as k on f.user_id = k.user_id
        group by f.user_id
    """,
    "crm_similar_titles": """
        with catalog as (select title_id from marts.titles where is_available)
        select
            s.title_id, s.rank, s.similar_title_id,
            s.title_id || '#' || cast(s.rank as varchar) as row_key,
            c1.title_id is not null and c2.title_id is not null as is_in_catalog,
            s.title_id = s.similar_title_id as is_self
        from exports.crm_similar_titles as s
        left join catalog as c1 on s.title_id = c1.title_id
        left join catalog as c2 on s.similar_title_id = c2.title_id
    """,
    "crm_triggers": f"""
        with contactable as ({_CONTACTABLE})
        select
            t.trigger_id, t.user_id, t.scenario, t.subject_type, t.subject_id,
            k.user_id is not null as may_be_contacted,
            c.user_id is not null as is_contact
        from exports.crm_triggers as t
        left join contactable as k on t.user_id = k.user_id
        left join exports.crm_contacts as c on t.user_id = c.user_id
    """,
}

# Columns shown with each unexpected row (the frame's identifying columns).
_INDEX_COLUMNS = {
    "crm_contacts": ["user_id"],
    "crm_recommendations": ["user_id", "watched_title_ids", "outside_catalog_title_ids"],
    "crm_similar_titles": ["title_id", "rank", "similar_title_id"],
    "crm_triggers": ["trigger_id", "user_id", "scenario"],
}


# ------------------------------------------------------------------------- results


@dataclass
class Failure:
    expectation: str
    column: str | None
    description: str
    unexpected_count: int | None
    observed: object
    sample: list[dict] = field(default_factory=list)


@dataclass
class GateResult:
    table: str
    success: bool
    row_count: int
    frame_rows: int
    evaluated: int
    failures: list[Failure]
    results_path: Path | None
    seconds: float
    bound: tuple[int, int] | None = None
    last_sync_rows: int | None = None
    # Of seconds: building the validation frame in DuckDB (the rest is GX).
    frame_seconds: float = 0.0

    def summary_markdown(self) -> str:
        if not self.failures:
            return f"All {self.evaluated} expectations passed on {self.row_count:,} rows."
        lines = [
            f"**{len(self.failures)} of {self.evaluated} expectations failed**",
            "",
            "| expectation | column | unexpected | sample rows |",
            "|---|---|---:|---|",
        ]
        for f in self.failures:
            sample = "<br>".join(json.dumps(s, default=str) for s in f.sample) or str(f.observed)
            count = "" if f.unexpected_count is None else f"{f.unexpected_count:,}"
            lines.append(
                f"| {f.description} (`{f.expectation}`) | {f.column or ''} | {count} | {sample} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "success": self.success,
            "row_count": self.row_count,
            "evaluated": self.evaluated,
            "failures": [f.__dict__ for f in self.failures],
            "results_path": str(self.results_path) if self.results_path else None,
            "seconds": self.seconds,
            "frame_seconds": self.frame_seconds,
            "bound": self.bound,
            "last_sync_rows": self.last_sync_rows,
        }


class _Suites:
    """One ephemeral GX context with a pandas data source; a suite per table."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        self.source = self.context.data_sources.add_pandas("crm_exports")

    def run(self, table: str, frame, expectations, index_columns: list[str]):
        gx = self.gx
        name = f"{table}_{uuid.uuid4().hex[:8]}"
        asset = self.source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(name)
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        validation = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        return validation.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": _SAMPLE_ROWS,
                "unexpected_index_column_names": index_columns,
            },
        )


def validate(
    tables: Sequence[str] | None = None,
    *,
    warehouse_path: Path | str | None = None,
    target: Target | None = None,
    last_sync: LastSync | None | bool = True,
    limits: Limits | None = None,
    results_dir: Path | str | None = None,
    now: datetime | None = None,
) -> dict[str, GateResult]:
    """Run the suites of ``tables`` (default: all four) and keep their results.

    ``last_sync`` is read from ``target``'s sync history unless given (``None``
    means no previous sync: no row-count bound and no as_of floor).
    """
    tables = list(tables or FRAMES)
    limits = limits or default_limits()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    results_dir = Path(results_dir or config.settings().data_dir / "quality")
    if last_sync is True:
        last_sync = last_successful_sync(target)
    warehouse_path = Path(warehouse_path or config.settings().warehouse_path)
    from ottp.warehouse import wait_for_lock

    # A run writing the warehouse (loader, dbt) holds the file: wait for it.
    con = wait_for_lock(
        lambda: duckdb.connect(str(warehouse_path), read_only=True),
        f"warehouse {warehouse_path}",
        LOCK_WAIT_S,
    )
    suites = _Suites()
    try:
        con.execute("set TimeZone = 'UTC'")
        deleted = _deleted_users_relation(con)
        return {
            t: _validate_one(con, suites, t, limits, last_sync or None, now, results_dir, deleted)
            for t in tables
        }
    finally:
        con.close()


def _deleted_users_relation(con: duckdb.DuckDBPyConnection) -> str:
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'deleted_users'"
    ).fetchall()[0][0]
    # Before the first pseudonymisation pass nobody has been pseudonymised.
    return "raw.deleted_users" if exists else "(select cast(null as varchar) as pseudonym limit 0)"


def _validate_one(con, suites, table, limits, last, now, results_dir, deleted) -> GateResult:
    started = time.perf_counter()
    frame = con.sql(FRAMES[table].replace("__DELETED_USERS__", deleted)).df()
    frame_seconds = round(time.perf_counter() - started, 3)
    row_count = con.execute(f"select count(*) from exports.{identifier(table)}").fetchall()[0][0]
    expectations = suite_expectations(table, limits, last, now)
    results = suites.run(table, frame, expectations, _INDEX_COLUMNS[table])
    failures = [_failure(r) for r in results.results if not r.success]

    # Circuit breaker: against the row count the last successful sync left.
    bound = None
    last_rows = last.row_counts.get(table) if last else None
    evaluated = len(results.results)
    if table in limits.bounded_tables and last_rows and last_rows >= limits.min_rows_for_bound:
        evaluated += 1
        bound = (int(last_rows * (1 - limits.max_drop)), int(last_rows * (1 + limits.max_growth)))
        if not bound[0] <= row_count <= bound[1]:
            failures.append(
                Failure(
                    "row_count_within_bound_of_last_sync",
                    None,
                    f"circuit breaker: rows within {bound[0]:,}..{bound[1]:,} "
                    f"(last successful sync: {last_rows:,})",
                    None,
                    row_count,
                )
            )
    seconds = round(time.perf_counter() - started, 3)
    result = GateResult(
        table=table,
        success=not failures,
        row_count=row_count,
        frame_rows=len(frame),
        evaluated=evaluated,
        failures=failures,
        results_path=None,
        seconds=seconds,
        bound=bound,
        last_sync_rows=last_rows,
        frame_seconds=frame_seconds,
    )
    result.results_path = _save(results_dir, table, results, result, now)
    return result


def _failure(r) -> Failure:
    config_ = r.expectation_config
    res = r.result or {}
    sample = [
        {k: _plain(v) for k, v in row.items()}
        for row in (res.get("partial_unexpected_index_list") or [])[:_SAMPLE_ROWS]
    ]
    if not sample and res.get("partial_unexpected_list"):
        sample = [{"value": _plain(v)} for v in res["partial_unexpected_list"][:_SAMPLE_ROWS]]
    error = (
        (r.exception_info or {}).get("exception_message")
        if isinstance(r.exception_info, dict)
        else None
    )
    return Failure(
        expectation=config_.type,
        column=config_.kwargs.get("column"),
        description=config_.description or config_.type,
        unexpected_count=res.get("unexpected_count"),
        observed=_plain(res.get("observed_value", error)),
        sample=sample,
    )


def _plain(value):
    """A JSON-friendly scalar: numpy scalars unwrapped, missing values as None."""
    import pandas as pd

    if hasattr(value, "item"):
        value = value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def _save(results_dir: Path, table: str, results, gate: GateResult, now: datetime) -> Path:
    folder = results_dir / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    document = {"gate": gate.to_dict(), "great_expectations": results.to_json_dict()}
    path.write_text(json.dumps(document, indent=1, default=str))
    (folder / "latest.txt").write_text(path.name + "\n")
    for old in sorted(p for p in folder.glob("*.json"))[:-_RESULTS_KEPT]:
        old.unlink()
    return path
