"""One size of the suite: its work folder, its environment and its stages and peers in order.

generate -> load (+ read_json, pandas peers) -> dbt full build (+ pandas sessions) -> train
-> recommend -> exports -> quality -> sync (SQLite; PostgreSQL and dbt on it when
reachable) (+ delete-and-insert sync peer) -> load one more day -> dbt incremental day
(+ the same build on a warehouse with no rows). Each step is one child process
(benchmarks.suite_process); ``SizeRun`` keeps what they measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from benchmarks import suite_peers, suite_postgres
from benchmarks.suite_process import StageFailed, dbt_stage, done, log, rate, run_child
from benchmarks.suite_summary import summarise
from ottp import config


def run_size(events: int, args: argparse.Namespace, root: Path, pg: dict | None) -> dict:
    """Every stage and peer on ``events`` simulated events; the run's record and summary."""
    from ottp.ingest import landing as ld
    from ottp.simulator import suggest_size

    run = SizeRun.prepare(events, args, root)
    # The full build covers `days` days; one more day is the incremental run.
    size = suggest_size(events, days=args.days)
    log(
        f"== {events:,} events: {size['users']:,} users, {size['titles']:,} titles, "
        f"{args.days} days + 1 for the incremental run; work folder {run.work}"
    )
    run.generate(size)
    files = ld.discover(run.landing_dir)
    days = sorted({f.partition_date for f in files})
    full_days, last_day = days[:-1], days[-1]
    event_files = [f.path for f in files if f.kind == "events" and f.partition_date < last_day]

    run.load(full_days)
    run.loader_peers(event_files)
    run.dbt_full_build()
    run.recommender()
    run.crm()
    if pg is not None:
        run.postgres(pg)
    if "sync-delete-insert" not in run.skip:
        run.sync_peer()
    run.incremental_day(last_day)
    if "dbt-no-data" not in run.skip:
        run.no_data_floor(last_day)

    result = {
        "events": events,
        "size": {**size, "days": args.days, "incremental_day": last_day.isoformat()},
        "stages": run.stages,
        "peers": run.peers,
    }
    result["summary"] = summarise(result)
    if not args.keep:
        shutil.rmtree(run.work, ignore_errors=True)
    return result


def _settings_with(variables: dict[str, str]) -> config.Settings:
    """ottp.config's settings for these variables; the environment is restored after."""
    with config.environment(variables):
        return config.settings()


@dataclass
class SizeRun:
    """The folders, environment and figures of one size's run."""

    events: int
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    stages: dict[str, dict] = field(default_factory=dict)
    peers: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def prepare(cls, events: int, args: argparse.Namespace, root: Path) -> SizeRun:
        """A clean work folder and the environment every child gets (ottp.config's, pointed
        at that folder)."""
        work = root / f"events-{events}"
        shutil.rmtree(work, ignore_errors=True)
        data_dir = work / "data"
        data_dir.mkdir(parents=True)
        pointed = {
            "OTTP_DATA_DIR": str(data_dir),
            "OTTP_LANDING_DIR": str(data_dir / "landing"),
            "OTTP_DBT_TARGET": "duckdb",
        }
        s = _settings_with(pointed)
        warehouse = data_dir / "warehouse.duckdb"
        if s.warehouse_path != warehouse:
            raise StageFailed(
                f"ottp.config puts the warehouse at {s.warehouse_path}, not {warehouse}"
            )
        env = config.dbt_env(s)
        env.update(
            pointed,
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            # the children import benchmarks.* and ottp from this tree
            PYTHONPATH=str(config.REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        for var in ("CRM_DATABASE_URL", "CRM_DATABASE_SCHEMA", "OTTP_MIN_DATE", "OTTP_MAX_DATE"):
            env.pop(var, None)
        return cls(events, args, work, env)

    # ----------------------------------------------------------------- locations

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "crm" / "crm.sqlite"

    @property
    def skip(self) -> set[str]:
        return set(self.args.skip)

    @property
    def dbt_target(self) -> Path:
        return self.work / "dbt_target"

    @property
    def dbt_scope(self) -> list[str]:
        # As production builds: unit tests run in the test suite, not on the data.
        scope = ["--exclude", "path:models/exports", "--exclude-resource-type", "unit_test"]
        if self.args.no_dbt_tests:
            scope += ["--exclude-resource-type", "test"]
        return scope

    # ----------------------------------------------------------------- recording

    def child(self, label: str, name: str, kwargs: dict, **options) -> dict:
        return run_child(label, name, kwargs, self.env, self.work, **options)

    def stage(self, key: str, unit: str, m: dict, items: int | None = None) -> dict:
        m["unit"] = unit
        if items is not None:
            m["items"] = items
        rate(m)
        self.stages[key] = m
        done(key, m)
        return m

    def peer(self, key: str, unit: str, m: dict, items: int | None = None) -> dict:
        m["unit"] = unit
        if items is not None and not m.get("timed_out"):
            m["items"] = items
        rate(m)
        self.peers[key] = m
        done(f"peer {key}", m)
        return m

    # ----------------------------------------------------------------- steps

    def generate(self, size: dict) -> None:
        kwargs = {
            "landing": str(self.landing_dir),
            "users": size["users"],
            "titles": size["titles"],
            "days": self.args.days + 1,
            "seed": self.args.seed,
            "dirty": self.args.dirty_rate,
        }
        self.stage("generate", "lines", self.child("generate", "generate", kwargs))

    def load(self, full_days: list[date]) -> None:
        kwargs = {
            "warehouse": str(self.warehouse),
            "landing": str(self.landing_dir),
            "days": [d.isoformat() for d in full_days],
        }
        m = self.stage("load", "lines", self.child("load", "load", kwargs))
        if not m["reconciles"]:
            raise StageFailed("the load does not reconcile")

    def loader_peers(self, event_files: list[Path]) -> None:
        """DuckDB's bare read_json and pandas on the same event files as the loader."""
        work = self.work
        if "read-json" not in self.skip:
            kwargs = {"files": [str(f) for f in event_files], "db": str(work / "read_json.duckdb")}
            self.peer("read_json", "rows", self.child("read_json", "read_json", kwargs))
            (work / "read_json.duckdb").unlink(missing_ok=True)
        if "pandas-load" not in self.skip:
            event_lines = self.stages["load"]["event_lines_in"]
            per_byte = event_lines / sum(f.stat().st_size for f in event_files)
            sample = suite_peers.pick_sample(event_files, self.args.pandas_max_lines, per_byte)
            clean, kept, dropped = suite_peers.clean_copy(sample, work / "pandas_landing")
            m = self.child("pandas_load", "pandas_load", {"files": clean})
            m = self.peer("pandas_load", "lines", m)
            m.update(
                {
                    "files": len(sample),
                    "of_files": len(event_files),
                    "lines_kept": kept,
                    "bad_lines_removed_beforehand": dropped,
                    "subsample": len(sample) < len(event_files),
                }
            )
            shutil.rmtree(work / "pandas_landing", ignore_errors=True)

    def dbt_full_build(self) -> None:
        """The full build, then the pandas sessionization peer on what it built."""
        m = dbt_stage(
            "dbt_full_build",
            ["build", "--full-refresh", *self.dbt_scope],
            self.env,
            self.work,
            self.dbt_target,
        )
        self.stage("dbt_full_build", "events", m, self.stages["load"]["events_loaded"])
        if "pandas-sessions" not in self.skip:
            event_lines = self.stages["load"]["event_lines_in"]
            modulus = max(1, -(-event_lines // self.args.pandas_max_lines))
            kwargs = {"warehouse": str(self.warehouse), "modulus": modulus}
            m = self.child("pandas_sessions", "pandas_sessions", kwargs)
            self.peer("pandas_sessions", "events", m)

    def recommender(self) -> None:
        kwargs = {"data_dir": str(self.data_dir), "warehouse": str(self.warehouse)}
        self.stage("train", "interactions", self.child("train", "train", kwargs))
        self.stage("recommend", "recommendations", self.child("recommend", "recommend", kwargs))

    def crm(self) -> None:
        """Exports, quality gates and the sync to SQLite: the end of the path to the CRM."""
        # dagster-dbt copies the project's partial_parse.msgpack into each
        # invocation's target folder, so a production exports run parses only what
        # changed; the same here (outside the timing).
        exports_target = self.work / "dbt_target_exports"
        exports_target.mkdir(exist_ok=True)
        if (self.dbt_target / "partial_parse.msgpack").exists():
            shutil.copy2(
                self.dbt_target / "partial_parse.msgpack",
                exports_target / "partial_parse.msgpack",
            )
        warehouse = str(self.warehouse)
        kwargs = {
            "warehouse": warehouse,
            "target_path": str(exports_target),
            "exclude": self.dbt_scope[2:],
        }
        self.stage("exports", "rows", self.child("exports", "exports", kwargs))
        kwargs = {
            "data_dir": str(self.data_dir),
            "warehouse": warehouse,
            "sqlite_path": str(self.sqlite_path),
        }
        m = self.stage("quality", "rows", self.child("quality", "quality", kwargs))
        if not m["success"]:
            raise StageFailed(f"quality gates failed: {m['failed']}")
        kwargs = {
            "warehouse": warehouse,
            "state_dir": str(self.data_dir / "crm" / "state"),
            "target": f"sqlite:///{self.sqlite_path}",
        }
        self.stage("sync_sqlite", "rows", self.child("sync_sqlite", "sync", kwargs))

    def postgres(self, pg: dict) -> None:
        """The sync to PostgreSQL; then the raw tables mirrored there and dbt built on them."""
        url = suite_postgres.url_for(pg["url"], pg["database"])
        kwargs = {
            "warehouse": str(self.warehouse),
            "state_dir": str(self.data_dir / "crm" / "state"),
            "target": url,
            "schema": f"crm_{self.events}",
        }
        self.stage("sync_postgres", "rows", self.child("sync_postgres", "sync", kwargs))
        if "dbt-postgres" in self.skip:
            return
        kwargs = {"warehouse": str(self.warehouse), "dsn": url}
        self.peer("pg_mirror", "rows", self.child("pg_mirror", "pg_mirror", kwargs))
        m = dbt_stage(
            "dbt_postgres",
            ["build", "--full-refresh", *self.dbt_scope],
            suite_postgres.dbt_env(self.env, pg["url"], pg["database"]),
            self.work,
            self.work / "dbt_target_pg",
            timeout=self.args.pg_dbt_timeout,
        )
        self.peer("dbt_postgres", "events", m, self.stages["load"]["events_loaded"])

    def sync_peer(self) -> None:
        kwargs = {"warehouse": str(self.warehouse), "folder": str(self.work / "sync_peer")}
        m = self.child("sync_delete_insert", "sync_peer", kwargs)
        self.peer("sync_delete_insert", "rows", m)

    def day_env(self, day: date) -> dict[str, str]:
        # The window Dagster's daily partition passes (environment variables, so dbt
        # parses partially): the staging tests then look at that landing day only
        # (macros/test_window.sql).
        return {
            **self.env,
            "OTTP_MIN_DATE": day.isoformat(),
            "OTTP_MAX_DATE": (day + timedelta(days=1)).isoformat(),
        }

    def incremental_day(self, day: date) -> None:
        kwargs = {
            "warehouse": str(self.warehouse),
            "landing": str(self.landing_dir),
            "days": [day.isoformat()],
        }
        m = self.stage("load_day", "lines", self.child("load_day", "load", kwargs))
        m = dbt_stage(
            "dbt_incremental_day",
            ["build", *self.dbt_scope],
            self.day_env(day),
            self.work,
            self.dbt_target,
        )
        self.stage("dbt_incremental_day", "events", m, self.stages["load_day"]["events_loaded"])

    def no_data_floor(self, day: date) -> None:
        """The same daily command with the same profile, warehouse path and parse state,
        on a warehouse whose raw tables are empty: dbt's own cost per build (imports,
        parse, every node's overhead), below which no day can go."""
        warehouse = self.warehouse
        aside = self.work / "warehouse-aside"
        aside.mkdir()
        wal = Path(f"{warehouse}.wal")
        moved = [f for f in (warehouse, wal) if f.exists()]
        for f in moved:
            f.rename(aside / f.name)
        try:
            self.child("empty_warehouse", "empty_warehouse", {"warehouse": str(warehouse)})
            m = dbt_stage(
                "dbt_no_data",
                ["build", *self.dbt_scope],
                self.day_env(day),
                self.work,
                self.dbt_target,
            )
            self.peer("dbt_no_data", "nodes", m, m.get("nodes"))
        finally:
            warehouse.unlink(missing_ok=True)
            wal.unlink(missing_ok=True)
            for f in moved:
                (aside / f.name).rename(f)
            aside.rmdir()
