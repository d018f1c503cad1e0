"""Render the suite's JSON (`benchmarks/suite.py --json PATH`) as docs/benchmarks.md's tables.

.venv/bin/python benchmarks/bench_report.py /tmp/ottp-bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(report: dict) -> str:
    """Summaries are recomputed from the stage figures with the current suite's rules."""
    from benchmarks.suite_summary import summarise

    for r in report["runs"]:
        r["summary"] = summarise(r)
    out = []
    m = report["machine"]
    out.append(
        f"Machine: {m['cpus']} vCPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['system']}, "
        f"Python {m['python']}. Load average at the start {report['load_avg_start']}, at the "
        f"end {report.get('load_avg_end')}. Command: `{report['command']}`; started "
        f"{report['started_at']}."
    )
    for r in report["runs"]:
        size = r["size"]
        out.append(
            f"\n**{r['events']:,} events asked** ({r['stages']['generate']['items']:,} lines "
            f"written; {size['users']:,} users, {size['titles']:,} titles, {size['days']} days "
            f"+ 1 for the incremental day)\n"
        )
        out.append(
            _row(["stage", "wall s", "CPU s", "items", "per s (wall)", "peak RSS MiB", "load avg"])
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for group, table in (("", r["stages"]), ("peer: ", r["peers"])):
            for key, s in table.items():
                if s.get("timed_out"):
                    out.append(
                        _row(
                            [group + key, f"> {s['wall_s']:.0f}", "", "", "", "", s["load_avg"][0]]
                        )
                    )
                    continue
                out.append(_row([
                    group + key, f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}",
                    f"{s.get('items', 0):,} {s.get('unit', '')}",
                    f"{s.get('per_s', 0):,.0f}", f"{s['peak_rss_mib']:,.0f}",
                    f"{s['load_avg'][0]:.1f}",
                ]))  # fmt: skip
        sm = r["summary"]
        out.append("")
        out.append(
            f"End to end ({' + '.join(sm['end_to_end_stages'])}): **{sm['end_to_end_s']:.1f} s** "
            f"wall, {sm['end_to_end_cpu_s']:.1f} s CPU, peak {sm['end_to_end_peak_rss_mib']:,.0f}"
            f" MiB; slowest stage: {sm['slowest_stage']}."
        )
        out.append("")
        out.append(_row(["ratio", "value"]))
        out.append("|---|---:|")
        for key, value in sm.items():
            if key in ("end_to_end_stages", "targets_met", "slowest_stage") or value is None:
                continue
            out.append(_row([key, value]))
        out.append("")
        out.append(
            "Targets: "
            + ", ".join(f"{k} {'met' if v else '**missed**'}" for k, v in sm["targets_met"].items())
        )
    if "growth" in report:
        g = report["growth"]
        out.append(
            f"\nGrowth {g['from']:,} → {g['to']:,} events asked ({g['factor']}× the lines): end "
            f"to end {g['end_to_end_ratio']}× (target ≤ {g['target']}×): "
            f"{'met' if g['met'] else '**missed**'}."
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
