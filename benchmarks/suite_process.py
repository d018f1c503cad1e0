"""How the suite runs and measures one child process: wall, CPU (wait4), peak memory, dbt.

The parent side: start ``python -m benchmarks.suite_child NAME ARGS OUT`` (or the dbt
wrapper) in a fresh process, wait for it with ``wait4`` so its CPU time includes the
processes it waited for, record the load average around it and read back what it
returned. The child side lives in ``benchmarks.suite_child``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from ottp import config

CHILD_MODULE = "benchmarks.suite_child"


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class StageFailed(RuntimeError):
    pass


def dbt_command(args: list[str], target_path: Path) -> list[str]:
    return [
        config.dbt_executable(),
        *args,
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROJECT_DIR),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
    ]


def dbt_call(args: list[str], target_path: Path, env: dict | None = None) -> None:
    """dbt with this process's environment (or ``env``); its output only when it fails."""
    proc = subprocess.run(dbt_command(args, target_path), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}")


def _wait(proc: subprocess.Popen, timeout: float | None) -> tuple[int, object, bool]:
    """Wait for the child with wait4 (its own rusage); kill it past the timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, False
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, True
        time.sleep(0.05)


def _measure(
    label: str, cmd: list[str], env: dict, log_path: Path, timeout: float | None = None
) -> dict:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"{label}: started")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        rc, usage, timed_out = _wait(proc, timeout)
    wall = time.perf_counter() - started
    # CPU from wait4 covers the child and what it waited for; memory comes from
    # the child itself (see suite_child.peak_rss_kib).
    m = {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if timed_out:
        m["timed_out"] = True
        log(f"{label}: stopped after the {timeout:.0f} s limit")
        return m
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise StageFailed(f"{label} failed (exit {rc}), log {log_path}:\n{tail}")
    return m


def run_child(
    label: str, name: str, kwargs: dict, env: dict, work: Path, timeout: float | None = None
) -> dict:
    """The child function ``name`` (see suite_child.CHILDREN) in a fresh process, measured."""
    tag = uuid.uuid4().hex[:8]
    args_path = work / "logs" / f"{label}-{tag}.args.json"
    out_path = work / "logs" / f"{label}-{tag}.out.json"
    args_path.parent.mkdir(parents=True, exist_ok=True)
    args_path.write_text(json.dumps(kwargs))
    cmd = [sys.executable, "-m", CHILD_MODULE, name, str(args_path), str(out_path)]
    m = _measure(label, cmd, env, work / "logs" / f"{label}.log", timeout)
    if not m.get("timed_out"):
        m.update(json.loads(out_path.read_text()))
        m["peak_rss_mib"] = round(m.pop("peak_rss_kib") / 1024, 1)
    return m


def dbt_stage(
    label: str, args: list[str], env: dict, work: Path, target: Path, timeout: float | None = None
) -> dict:
    """One dbt command, measured, with what its run_results.json says about its nodes."""
    m = run_child(label, "dbt", {"args": args, "target_path": str(target)}, env, work, timeout)
    if m.get("timed_out"):
        return m
    results = json.loads((target / "run_results.json").read_text())
    nodes = results["results"]
    models = [r for r in nodes if r["unique_id"].startswith("model.")]
    tests = [r for r in nodes if r["unique_id"].startswith(("test.", "unit_test."))]
    by_time = sorted(nodes, key=lambda r: -r["execution_time"])
    failed = [r["unique_id"] for r in nodes if r["status"] in ("error", "fail", "runtime error")]
    if failed:
        m["failed_nodes"] = failed
        log(f"{label}: dbt reported {len(failed)} failed nodes: {', '.join(failed[:5])}")
    m.update(
        {
            "dbt_elapsed_s": round(results["elapsed_time"], 3),
            "nodes": len(nodes),
            "models": len(models),
            "tests": len(tests),
            "models_execution_s": round(sum(r["execution_time"] for r in models), 3),
            "tests_execution_s": round(sum(r["execution_time"] for r in tests), 3),
            "node_s": {
                r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 3) for r in by_time
            },
            "slowest": [
                [r["unique_id"].split(".", 2)[-1], round(r["execution_time"], 2)]
                for r in by_time[:8]
            ],
        }
    )
    return m


def done(label: str, m: dict) -> None:
    """Log one measurement's figures."""
    if m.get("timed_out"):
        return
    rate = m.get("items", 0) / m["wall_s"] if m["wall_s"] else 0
    log(
        f"{label}: {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU, "
        f"{m.get('items', 0):,} {m.get('unit', 'items')} ({rate:,.0f}/s), "
        f"peak {m['peak_rss_mib']:,.0f} MiB, load {m['load_avg'][0]}"
    )


def rate(m: dict) -> None:
    if m.get("items") and m.get("wall_s"):
        m["per_s"] = round(m["items"] / m["wall_s"], 1)
