"""Freshness: how long a new landing file takes to reach the CRM target, nobody clicking.

Builds the demo data set (or a smaller one) once, starts `ottp ui` (webserver and
daemon: the landing-file sensor and declarative automation), waits for the
instance to be idle, then drops new landing files one at a time, each a new day
of activity, and measures from the file's arrival to the successful CRM sync
that includes it (sync_history.source_as_of reaching the new day). Also reports
where that time goes: waiting for the sensor, the ingest run, waiting for the
automation tick, and the run that rebuilds marts, ML scores, exports, gates and
the sync. Target: at most 5 minutes on the demo data.

    .venv/bin/python benchmarks/bench_freshness.py --workdir /tmp/ottp-fresh --files 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402
from ottp.ingest import landing  # noqa: E402

TARGET_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


RUNS = """
{ runsOrError(limit: 200) { ... on Runs { results {
    runId jobName status startTime endTime creationTime tags { key value } } } } }
"""


def _runs(base: str) -> list[dict]:
    return _graphql(base, RUNS)["runsOrError"]["results"]


def _wait(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # the server is starting
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _idle(base: str, quiet_s: float = 45) -> None:
    """No run queued or in progress for quiet_s seconds."""
    quiet_since = None
    while True:
        busy = [
            r
            for r in _runs(base)
            if r["status"] in ("QUEUED", "STARTING", "STARTED", "NOT_STARTED")
        ]
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return
        time.sleep(3)


def _next_day_file(landing_dir: Path, day: date) -> tuple[Path, int]:
    """A new day of activity: the last day's events one day later, with new event ids."""
    source_day = day - timedelta(days=1)
    sources = [str(f.path) for f in landing.discover(landing_dir, source_day) if f.kind == "events"]
    folder = landing.partition_dir(landing_dir, "events", day)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".part-00000.ndjson.gz.tmp"
    con = duckdb.connect()
    rows = con.execute(
        """
        select to_json(struct_pack(
            event_id := uuid()::varchar,
            event_type := event_type,
            schema_version := schema_version,
            occurred_at := strftime(
                occurred_at::timestamp + interval 1 day, '%Y-%m-%dT%H:%M:%S.%gZ'
            ),
            received_at := strftime(
                received_at::timestamp + interval 1 day, '%Y-%m-%dT%H:%M:%S.%gZ'
            ),
            user_id := user_id, device_id := device_id, platform := platform,
            app_version := app_version, country := country,
            -- a new day's playbacks are new playbacks
            properties := case
                when properties->>'playback_id' is null then properties
                else json_merge_patch(
                    properties,
                    json_object('playback_id', (properties->>'playback_id') || $suffix)
                )
            end
        ))::varchar
        from read_json($files, format = 'newline_delimited', ignore_errors = true,
                       columns = {event_id: 'varchar', event_type: 'varchar',
                                  schema_version: 'varchar', occurred_at: 'varchar',
                                  received_at: 'varchar', user_id: 'varchar',
                                  device_id: 'varchar', platform: 'varchar',
                                  app_version: 'varchar', country: 'varchar',
                                  properties: 'json'})
        where event_id is not null and event_type is not null
          and try_cast(occurred_at as timestamp) is not null
          and try_cast(received_at as timestamp) is not null
        """,
        {"files": sources, "suffix": f"-{day:%Y%m%d}"},
    ).fetchall()
    con.close()
    with gzip.open(tmp, "wt") as f:
        for (line,) in rows:
            f.write(line + "\n")
    final = folder / "part-00000.ndjson.gz"
    # arrives whole, the way a collector delivers: written aside, then renamed
    os.replace(tmp, final)
    return final, len(rows)


def _synced_through(crm_path: Path) -> datetime | None:
    if not crm_path.exists():
        return None
    con = sqlite3.connect(f"file:{crm_path}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "select max(source_as_of) from sync_history where status = 'success'"
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return datetime.fromisoformat(str(row[0])) if row and row[0] else None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "ottp-fresh"))
    parser.add_argument("--files", type=int, default=3, help="new landing files, one at a time")
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--titles", type=int, default=500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def _first_build(args: argparse.Namespace, root: Path, env: dict) -> float:
    """Simulated landing files, then `ottp demo`'s first build; its seconds."""
    py = sys.executable
    print(f"[fresh] generating {args.users} users x {args.days} days under {root}", file=sys.stderr)
    subprocess.run(
        [
            py,
            "-m",
            "ottp.cli",
            "simulate",
            "--out",
            str(root / "landing"),
            "--users",
            str(args.users),
            "--titles",
            str(args.titles),
            "--days",
            str(args.days),
            "--seed",
            "42",
            "--quiet",
        ],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print("[fresh] first build (ottp demo)", file=sys.stderr)
    started = time.monotonic()
    subprocess.run(
        [py, "-m", "ottp.cli", "demo"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.monotonic() - started


def _file_row(runs: list[dict], day: date, lines: int, arrived: float, reached: float) -> dict:
    """One file's latency, split into the runs the sensor and the automation started."""
    ingest = [r for r in runs if r["jobName"] == "ingest"]
    auto = [r for r in runs if r["jobName"] == "__ASSET_JOB" and r["startTime"]]
    row = {
        "day": day.isoformat(),
        "events": lines,
        "latency_s": round(reached - arrived, 1),
        "runs": len(runs),
    }
    if ingest and ingest[-1]["startTime"]:
        first = min(ingest, key=lambda r: r["creationTime"])
        row["wait_for_sensor_s"] = round(first["creationTime"] - arrived, 1)
        row["ingest_run_s"] = round((first["endTime"] or reached) - first["startTime"], 1)
    if auto:
        first_auto = min(auto, key=lambda r: r["creationTime"])
        if ingest and ingest[-1]["endTime"]:
            row["wait_for_automation_s"] = round(
                first_auto["creationTime"] - max(r["endTime"] or 0 for r in ingest), 1
            )
        row["automation_runs_s"] = round(
            max((r["endTime"] or reached) for r in auto) - first_auto["startTime"], 1
        )
    return row


def _new_files(base: str, root: Path, files: int) -> list[dict]:
    """Land one new day at a time and wait until the CRM has synced it."""
    _wait(lambda: _graphql(base, "{ version }")["version"], 300, "the webserver")
    print("[fresh] UI up; waiting for the instance to be idle", file=sys.stderr)
    _idle(base)
    crm = root / "crm" / "crm.sqlite"
    last_day = max(landing.partition_dates(root / "landing"))
    results = []
    for i in range(files):
        day = last_day + timedelta(days=i + 1)
        known = {r["runId"] for r in _runs(base)}
        path, lines = _next_day_file(root / "landing", day)
        arrived = time.time()
        print(f"[fresh] file {i + 1}/{files}: {lines:,} events of {day}", file=sys.stderr)
        _wait(
            lambda d=day: (s := _synced_through(crm)) and s.date() >= d,
            1800,
            f"the CRM sync of {day}",
            interval=1,
        )
        reached = time.time()
        runs = [r for r in _runs(base) if r["runId"] not in known]
        row = _file_row(runs, day, lines, arrived, reached)
        results.append(row)
        print(f"[fresh]   reached the CRM after {row['latency_s']:.0f} s: {row}", file=sys.stderr)
        _idle(base, quiet_s=20)
    return results


def _print_summary(summary: dict) -> None:
    print(
        "\n| day | events | landing file -> CRM (s) | sensor wait | ingest run "
        "| automation wait | automation runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in summary["files"]:
        print(
            f"| {r['day']} | {r['events']:,} | {r['latency_s']:.0f} "
            f"| {r.get('wait_for_sensor_s', '–')} "
            f"| {r.get('ingest_run_s', '–')} | {r.get('wait_for_automation_s', '–')} "
            f"| {r.get('automation_runs_s', '–')} |"
        )
    print(
        f"\nmedian {summary['median_latency_s']} s, max {summary['max_latency_s']} s, "
        f"target {TARGET_S} s: {'met' if summary['target_met'] else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    # No DAGSTER_* from this shell: the instance then lives under the fresh data folder.
    env = config.child_env({"OTTP_DATA_DIR": str(root), "OTTP_LANDING_DIR": None})
    env = {k: v for k, v in env.items() if not k.startswith("DAGSTER_")}
    first_build_s = _first_build(args, root, env)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(root / "dagster-dev.log", "w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "ottp.cli", "ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        results = _new_files(base, root, args.files)
    finally:
        os.killpg(ui.pid, 15)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, 9)
        log.close()

    latencies = [r["latency_s"] for r in results]
    summary = {
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "data": {"users": args.users, "titles": args.titles, "days": args.days},
        "first_build_s": round(first_build_s, 1),
        "files": results,
        "median_latency_s": statistics.median(latencies) if latencies else None,
        "max_latency_s": max(latencies) if latencies else None,
        "target_s": TARGET_S,
        "target_met": bool(latencies) and max(latencies) <= TARGET_S,
    }
    _print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
