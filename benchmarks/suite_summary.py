"""The suite's record: the ratios and targets of one size's run, the growth between sizes,
the machine and code it ran on, and the table printed at the end.

``summarise`` recomputes everything from the stage and peer figures, so
benchmarks/bench_report.py can summarise an older JSON with today's rules.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from ottp import config

# The path from landing files to the CRM target (sync to PostgreSQL is the other target).
END_TO_END = (
    "load",
    "dbt_full_build",
    "train",
    "recommend",
    "exports",
    "quality",
    "sync_sqlite",
)
TARGETS = {
    "end_to_end_s": 120.0,
    "end_to_end_peak_rss_mib": 4096.0,
    "loader_vs_read_json": 0.7,
    "loader_vs_pandas": 10.0,
    "incremental_vs_full": 0.10,
    "growth_10x": 12.0,
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def summarise(r: dict) -> dict:
    """One size's ratios and targets, from its stage and peer figures only."""
    st, pe = r["stages"], r["peers"]
    out = _end_to_end(st)
    _loader_ratios(out, st, pe)
    _dbt_ratios(out, st["dbt_full_build"], st["dbt_incremental_day"], pe)
    _peer_ratios(out, st, pe)
    out["targets_met"] = _targets_met(out)
    return out


def _end_to_end(st: dict) -> dict:
    e2e = [st[k] for k in END_TO_END if k in st]
    return {
        "end_to_end_s": round(sum(m["wall_s"] for m in e2e), 2),
        "end_to_end_cpu_s": round(sum(m["cpu_s"] for m in e2e), 2),
        # stages run one after another: the peak of the path is the largest child's
        "end_to_end_peak_rss_mib": max(m["peak_rss_mib"] for m in e2e),
        "end_to_end_stages": list(END_TO_END),
        "slowest_stage": max((k for k in END_TO_END if k in st), key=lambda k: st[k]["wall_s"]),
    }


def _loader_ratios(out: dict, st: dict, pe: dict) -> None:
    load_s = st["load"]["wall_s"]
    load_cpu = st["load"]["cpu_s"]
    # CPU ratios too: on a busy machine they show the work apart from the waiting.
    if "read_json" in pe:
        out["loader_vs_read_json"] = _ratio(pe["read_json"]["wall_s"], load_s)
        out["loader_vs_read_json_cpu"] = _ratio(pe["read_json"]["cpu_s"], load_cpu)
    if "pandas_load" in pe:
        p = pe["pandas_load"]
        lines = st["load"]["event_lines_in"]
        out["loader_vs_pandas"] = _ratio(lines / load_s, p["lines_kept"] / p["wall_s"])
        out["loader_vs_pandas_cpu"] = _ratio(lines / load_cpu, p["lines_kept"] / p["cpu_s"])


def _dbt_ratios(out: dict, full: dict, incr: dict, pe: dict) -> None:
    out["incremental_vs_full"] = _ratio(incr["wall_s"], full["wall_s"])
    out["incremental_vs_full_cpu"] = _ratio(incr["cpu_s"], full["cpu_s"])
    out["incremental_vs_full_models"] = _ratio(
        incr["models_execution_s"], full["models_execution_s"]
    )
    if pe.get("dbt_no_data", {}).get("wall_s"):
        floor = pe["dbt_no_data"]["wall_s"]
        # No daily build is cheaper than the floor, so the target ratio can
        # only be met once floor / full is under it.
        out["dbt_no_data_vs_full"] = _ratio(floor, full["wall_s"])
        out["incremental_above_no_data_s"] = round(incr["wall_s"] - floor, 2)
        out["full_above_no_data_s"] = round(full["wall_s"] - floor, 2)
    if "pandas_sessions" in pe:
        p = pe["pandas_sessions"]
        dbt_s = full["node_s"].get("int_sessions")
        out["sessions_equal"] = p["equal"]
        if dbt_s:
            dbt_rate = p["activity_events_total"] / dbt_s
            pandas_rate = p["items"] / p["compute_s"] if p["compute_s"] else None
            out["sessions_dbt_events_per_s"] = round(dbt_rate)
            out["sessions_pandas_events_per_s"] = round(pandas_rate) if pandas_rate else None
            out["sessions_dbt_vs_pandas"] = _ratio(dbt_rate, pandas_rate)
    if "dbt_postgres" in pe:
        pg = pe["dbt_postgres"]
        out["dbt_postgres_vs_duckdb"] = _ratio(pg["wall_s"], full["wall_s"])
        out["dbt_postgres_timed_out"] = bool(pg.get("timed_out"))


def _peer_ratios(out: dict, st: dict, pe: dict) -> None:
    tr = st["train"]
    if tr.get("als") and tr.get("popularity"):
        a, p = tr["als"], tr["popularity"]
        out["als_ndcg"] = a["ndcg"]
        out["popularity_ndcg"] = p["ndcg"]
        out["als_vs_popularity_ndcg"] = _ratio(a["ndcg"], p["ndcg"])
        out["als_vs_popularity_fit_time"] = _ratio(a["fit_s"], p["fit_s"])
    if "sync_delete_insert" in pe:
        s = pe["sync_delete_insert"]
        out["sync_equal"] = s["equal"]
        out["delete_insert_vs_diff_resync"] = _ratio(s["delete_insert_s"], s["diff_resync_s"])


def _targets_met(out: dict) -> dict[str, bool]:
    checks = {
        "end_to_end_s": out["end_to_end_s"] <= TARGETS["end_to_end_s"],
        "end_to_end_peak_rss_mib": out["end_to_end_peak_rss_mib"]
        <= TARGETS["end_to_end_peak_rss_mib"],
        "incremental_vs_full": out["incremental_vs_full"] <= TARGETS["incremental_vs_full"],
    }
    if out.get("loader_vs_read_json") is not None:
        checks["loader_vs_read_json"] = out["loader_vs_read_json"] >= TARGETS["loader_vs_read_json"]
    if out.get("loader_vs_pandas") is not None:
        checks["loader_vs_pandas"] = out["loader_vs_pandas"] >= TARGETS["loader_vs_pandas"]
    return checks


def growth(runs: list[dict]) -> dict | None:
    """The end-to-end time of the largest size over the smallest's, against the target."""
    runs = sorted(runs, key=lambda r: r["events"])
    if len(runs) < 2:
        return None
    a, b = runs[0], runs[-1]
    # The simulator hits the asked size within ~10 %: grow by the lines it wrote.
    factor = b["stages"]["load"]["items"] / a["stages"]["load"]["items"]
    ratio = round(b["summary"]["end_to_end_s"] / a["summary"]["end_to_end_s"], 3)
    limit = TARGETS["growth_10x"] * factor / 10
    return {
        "from": a["events"],
        "to": b["events"],
        "factor": round(factor, 2),
        "end_to_end_ratio": ratio,
        "target": round(limit, 2),
        "met": ratio <= limit,
    }


def machine() -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def code_version() -> dict:
    def git(*a: str) -> str | None:
        try:
            p = subprocess.run(
                ["git", *a], cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "root": str(config.REPO_ROOT),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


_RATIO_LABELS = (
    ("loader_vs_read_json", "loader speed / bare read_json speed"),
    ("loader_vs_pandas", "loader speed / pandas read_json speed (lines/s)"),
    ("incremental_vs_full", "incremental day / full build (wall)"),
    ("incremental_vs_full_cpu", "incremental day / full build (CPU)"),
    ("incremental_vs_full_models", "incremental day / full build (models executing)"),
    ("dbt_no_data_vs_full", "same daily build on no rows / full build (wall)"),
    ("incremental_above_no_data_s", "incremental day above that floor (s)"),
    ("full_above_no_data_s", "full build above that floor (s)"),
    ("sessions_dbt_vs_pandas", "sessionization dbt / pandas (events/s)"),
    ("sessions_equal", "sessions equal (dbt vs pandas)"),
    ("dbt_postgres_vs_duckdb", "dbt build PostgreSQL / DuckDB (wall)"),
    ("als_ndcg", "ALS NDCG@10"),
    ("popularity_ndcg", "popularity NDCG@10"),
    ("als_vs_popularity_fit_time", "ALS / popularity fit time"),
    ("delete_insert_vs_diff_resync", "delete+insert / diff re-sync (1 % change)"),
    ("sync_equal", "targets equal (diff vs delete+insert)"),
)


def format_table(report: dict) -> str:
    """The plain-text table printed at the end of a run."""
    lines = []
    for r in report["runs"]:
        lines += _run_lines(r)
    if "growth" in report:
        g = report["growth"]
        lines.append(
            f"\ngrowth {g['from']:,} -> {g['to']:,} events ({g['factor']:g}x): end to end "
            f"{g['end_to_end_ratio']}x (target <= {g['target']}: "
            f"{'met' if g['met'] else 'MISSED'})"
        )
    return "\n".join(lines)


def _run_lines(r: dict) -> list[str]:
    lines = [
        f"\n{r['events']:,} events ({r['size']['users']:,} users, "
        f"{r['size']['titles']:,} titles, {r['size']['days']} days + 1)",
        f"  {'stage':<24}{'wall s':>9}{'CPU s':>9}{'items':>13}  {'unit':<16}"
        f"{'per s':>12}{'peak MiB':>10}{'load':>6}",
    ]
    for group, table in (("", r["stages"]), ("peer ", r["peers"])):
        for key, m in table.items():
            if m.get("timed_out"):
                lines.append(f"  {group + key:<24}{m['wall_s']:>9.1f}  stopped at the limit")
                continue
            lines.append(
                f"  {group + key:<24}{m['wall_s']:>9.1f}{m['cpu_s']:>9.1f}"
                f"{m.get('items', 0):>13,}  {m.get('unit', ''):<16}{m.get('per_s', 0):>12,.0f}"
                f"{m['peak_rss_mib']:>10,.0f}{m['load_avg'][0]:>6.1f}"
            )
            if m.get("failed_nodes"):
                lines.append(f"    dbt failed: {', '.join(m['failed_nodes'])}")
    s = r["summary"]
    lines.append(
        f"  end to end (landing -> CRM): {s['end_to_end_s']:.1f} s wall, "
        f"{s['end_to_end_cpu_s']:.1f} s CPU, peak {s['end_to_end_peak_rss_mib']:,.0f}"
        f" MiB; slowest stage {s['slowest_stage']}"
    )
    for key, label in _RATIO_LABELS:
        if key in s and s[key] is not None:
            extra = (
                " (lower bound: stopped at the limit)"
                if (key == "dbt_postgres_vs_duckdb" and s.get("dbt_postgres_timed_out"))
                else ""
            )
            lines.append(f"  {label:<50} {s[key]}{extra}")
    lines.append(
        "  targets: "
        + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in s["targets_met"].items())
    )
    return lines
