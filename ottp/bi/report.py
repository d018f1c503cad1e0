"""The pipeline report: one self-contained HTML page a data engineer reads after a build.

What arrived (lines per landing day, rejected lines by reason, rows the staging
models quarantined by reason, with raw = staged + quarantined), who the viewers are
(fan segments per category, lifecycle stages, a retention curve), how the
recommender does over its versions, whether the CRM gates passed and what the
last sync wrote. Charts are inline SVG, so the page opens from the file system
with no network and no JavaScript. Every figure comes from one DuckDB query over
the warehouse, the model registry or the quality results.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ottp import config
from ottp.ingest import load
from ottp.warehouse import connect

RETENTION_DAYS = 28
# The staging model of each event family (ottp.contract.rules.FAMILIES); every
# raw event is in one of them or in the quarantine (dbt_project/macros/quarantine.sql).
EVENT_STAGING_MODELS = {
    "navigation": "stg_navigation_events",
    "player": "stg_player_events",
    "interest": "stg_interest_events",
    "account": "stg_account_events",
    "survey": "stg_survey_responses",
}


@dataclass
class Report:
    path: Path
    generated_at: datetime
    figures: dict = field(default_factory=dict)

    def markdown(self) -> str:
        f = self.figures
        lines = [
            f"**{f['load']['events_loaded']:,}** events loaded from {f['load']['lines_in']:,} "
            f"lines ({f['load']['duplicates']:,} duplicates, {f['load']['rejected']:,} "
            f"rejected); reconciliation {'holds' if f['load']['reconciles'] else 'FAILS'}.",
            "",
            *_quarantine_markdown(f["quarantine"]),
            "| segment | users |",
            "|---|---:|",
            *(f"| {k} | {v:,} |" for k, v in f["segments"].items()),
            "",
            "| lifecycle stage | users |",
            "|---|---:|",
            *(f"| {k} | {v:,} |" for k, v in f["lifecycle"].items()),
        ]
        retention = f["retention"]
        if retention:
            marks = {d: r for d, r, _ in retention if d in (1, 7, 14, 28)}
            lines += ["", "Retention: " + ", ".join(f"day {d} {r:.0%}" for d, r in marks.items())]
        gates = f["gates"]
        if gates:
            lines += ["", "| CRM gate | result | failed expectations |", "|---|---|---:|"]
            lines += [
                f"| {g['table']} | {'pass' if g['success'] else 'FAIL'} | {len(g['failures'])} |"
                for g in gates
            ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def _figures(con: duckdb.DuckDBPyConnection, data_dir: Path, reconciliation: dict) -> dict:
    figures: dict = {"load": reconciliation}
    figures["rejected_by_reason"] = dict(
        _rows(
            con,
            "select reason_code, count(*) from raw.rejected_events group by 1 order by 2 desc",
        )
    )
    figures["quarantine"] = quarantine(con)
    figures["lines_per_day"] = [
        (str(d), int(n))
        for d, n in _rows(
            con,
            "select landing_date, sum(lines_in) from raw.load_manifest "
            "where file_kind = 'events' group by 1 order by 1",
        )
    ]
    figures["segments"] = dict(
        _rows(
            con,
            "select coalesce(highest_segment, 'none'), count(*) from marts.user_segments "
            "group by 1 order by 2 desc",
        )
    )
    figures["fans_per_category"] = [
        (c, int(f), int(h))
        for c, f, h in _rows(
            con,
            "select category, count(*) filter (where segment = 'fan') as fans, "
            "count(*) filter (where segment = 'hardcore_fan') as hardcore_fans "
            "from marts.user_category_segments group by 1 "
            "order by fans + hardcore_fans desc, category",
        )
    ]
    figures["lifecycle"] = dict(
        _rows(
            con,
            "select lifecycle_stage, count(*) from marts.user_lifecycle group by 1 order by 2 desc",
        )
    )
    figures["retention"] = [
        (int(d), float(r), int(n))
        for d, r, n in _rows(
            con,
            f"""
            with active as (
                select distinct user_id, session_date as day
                from marts.sessions
                where user_id is not null
            ),
            firsts as (select user_id, min(day) as first_day from active group by 1),
            horizon as (select max(day) as last_day from active),
            offsets as (select cast(range as integer) as d from range(0, {RETENTION_DAYS + 1}))
            select
                offsets.d,
                count(distinct active.user_id) filter (
                    where active.day = firsts.first_day + offsets.d
                )::double / count(distinct firsts.user_id) as retained,
                count(distinct firsts.user_id) as cohort
            from offsets
            cross join horizon
            join firsts on firsts.first_day + offsets.d <= horizon.last_day
            left join active on active.user_id = firsts.user_id
            group by offsets.d
            order by offsets.d
            """,
        )
    ]
    figures["models"] = _model_history(data_dir / "models" / "promotions.jsonl")
    figures["gates"] = _gates(data_dir / "quality")
    return figures


def _model_history(history: Path) -> list[dict]:
    if not history.exists():
        return []
    entries = []
    for line in history.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        gate = entry.get("gate") or {}
        entries.append(
            {
                "version": entry.get("version"),
                "decided_at": entry.get("decided_at"),
                "passed": bool(entry.get("passed")),
                "candidate": gate.get("candidate"),
                "baseline": gate.get("baseline"),
            }
        )
    return entries


def _gates(results_dir: Path) -> list[dict]:
    gates = []
    if not results_dir.exists():
        return gates
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        latest = folder / "latest.txt"
        if not latest.exists():
            continue
        document = json.loads((folder / latest.read_text().strip()).read_text())
        gate = document.get("gate", {})
        gates.append(
            {
                "table": gate.get("table", folder.name),
                "success": bool(gate.get("success")),
                "evaluated": gate.get("evaluated"),
                "failures": gate.get("failures") or [],
                "path": str(folder / latest.read_text().strip()),
            }
        )
    return gates


def quarantine(con: duckdb.DuckDBPyConnection) -> dict:
    """Rows the staging models kept out, by reason, and raw = staged + quarantined.

    Counted from the staging views themselves (not from raw minus quarantine), so
    a row dropped anywhere between raw and staging breaks the reconciliation.
    Empty (``built`` false) before the first dbt build made the views.
    """
    views = ["stg_quarantined_events", "stg_quarantined_titles",
             *EVENT_STAGING_MODELS.values()]  # fmt: skip
    if not all(_has_table(con, "staging", v) for v in views):
        return {"built": False, "events_by_reason": [], "titles_by_reason": []}
    staged_sql = " + ".join(
        f"(select count(*) from staging.{m})" for m in EVENT_STAGING_MODELS.values()
    )
    raw, staged, quarantined, titles = con.execute(
        f"""
        select
            (select count(*) from raw.events),
            {staged_sql},
            (select count(*) from staging.stg_quarantined_events),
            (select count(*) from staging.stg_quarantined_titles)
        """
    ).fetchone()
    by_reason = [
        {"staging_model": m, "rule_id": r, "reason_code": c, "reason": t, "rows": int(n)}
        for m, r, c, t, n in _rows(
            con,
            "select staging_model, rule_id, reason_code, reason, count(*) "
            "from staging.stg_quarantined_events group by all order by 5 desc, 2",
        )
    ]
    titles_by_reason = [
        {"staging_model": "stg_titles", "rule_id": r, "reason_code": c, "reason": t,
         "rows": int(n)}
        for r, c, t, n in _rows(
            con,
            "select rule_id, reason_code, reason, count(*) "
            "from staging.stg_quarantined_titles group by all order by 4 desc, 1",
        )
    ]  # fmt: skip
    return {
        "built": True,
        "raw_events": int(raw),
        "staged_events": int(staged),
        "quarantined_events": int(quarantined),
        "quarantined_titles": int(titles),
        "reconciles": raw == staged + quarantined,
        "events_by_reason": by_reason,
        "titles_by_reason": titles_by_reason,
    }


def _quarantine_markdown(q: dict) -> list[str]:
    if not q["built"]:
        return ["Quarantine: the staging views are not built yet.", ""]
    lines = [
        f"**{q['quarantined_events']:,}** raw events quarantined out of staging "
        f"(raw {q['raw_events']:,} = staged {q['staged_events']:,} + quarantined: "
        f"{'holds' if q['reconciles'] else 'FAILS'}); "
        f"{q['quarantined_titles']:,} catalog rows quarantined.",
        "",
    ]
    rows = q["events_by_reason"] + q["titles_by_reason"]
    if rows:
        lines += ["| staging model | rule | reason | rows |", "|---|---|---|---:|"]
        lines += [
            f"| {r['staging_model'] or '(none)'} | {r['rule_id']} | {r['reason']} | {r['rows']:,} |"
            for r in rows
        ]
        lines.append("")
    return lines


# --------------------------------------------------------------------------- charts


def _bars(items: list[tuple[str, float]], unit: str = "", width: int = 560) -> str:
    """A horizontal bar chart."""
    if not items:
        return "<p>No data yet.</p>"
    top = max(v for _, v in items) or 1
    row, label_w = 22, 150
    height = row * len(items) + 10
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = (width - label_w - 80) * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{html.escape(str(label))}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="#4f6bed"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{value:,.0f}{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _line(points: list[tuple[float, float]], x_label: str, y_label: str, percent: bool) -> str:
    """A line chart with its axes; y from 0 to the maximum (or 100 %)."""
    if len(points) < 2:
        return "<p>Not enough history yet.</p>"
    width, height, pad = 580, 240, 60
    xs = [p[0] for p in points]
    x0, x1 = min(xs), max(xs)
    y1 = 1.0 if percent else max(p[1] for p in points) * 1.1 or 1.0

    def sx(x: float) -> float:
        return pad + (width - 2 * pad) * (x - x0) / ((x1 - x0) or 1)

    def sy(y: float) -> float:
        return height - pad - (height - 2 * pad) * y / y1

    path = " ".join(
        f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points)
    )
    ticks = [y1 * t / 4 for t in range(5)]

    def tick(t: float) -> str:
        return f"{t:.0%}" if percent else f"{t:.3f}"

    labels = "".join(
        f'<text x="{pad - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{tick(t)}</text>' for t in ticks
    )
    grid = "".join(
        f'<line x1="{pad}" x2="{width - pad}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#ddd"/>'
        for t in ticks
    )
    return (
        f'<svg width="{width}" height="{height}" role="img">{grid}{labels}'
        f'<path d="{path}" fill="none" stroke="#4f6bed" stroke-width="2"/>'
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>'
        f'<text x="{pad}" y="{height - pad + 16}">{x0:g}</text>'
        f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">{x1:g}</text>'
        "</svg>"
    )


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _quarantine_html(q: dict) -> list[str]:
    if not q["built"]:
        return ["<h3>Quarantine</h3><p>The staging views are not built yet.</p>"]
    rows = q["events_by_reason"] + q["titles_by_reason"]
    return [
        "<h3>Quarantined rows: loaded, but kept out of staging</h3>",
        _table(
            ["raw events", "staged", "quarantined", "reconciles", "catalog rows quarantined"],
            [[f"{q['raw_events']:,}", f"{q['staged_events']:,}",
              f"{q['quarantined_events']:,}", "yes" if q["reconciles"] else "NO",
              f"{q['quarantined_titles']:,}"]],
        ),
        _table(
            ["staging model", "rule", "reason code", "reason", "rows"],
            [[r["staging_model"] or "(none)", r["rule_id"], r["reason_code"], r["reason"],
              f"{r['rows']:,}"] for r in rows],
        )
        if rows
        else "<p>No row quarantined.</p>",
    ]  # fmt: skip


def _html(figures: dict, generated_at: datetime) -> str:
    ld = figures["load"]
    models = [m for m in figures["models"] if m["candidate"] is not None]
    sections = [
        "<h2>Loading</h2>",
        _table(
            ["lines in", "events loaded", "duplicates", "rejected", "reconciles"],
            [
                [
                    f"{ld['lines_in']:,}",
                    f"{ld['events_loaded']:,}",
                    f"{ld['duplicates']:,}",
                    f"{ld['rejected']:,}",
                    "yes" if ld["reconciles"] else "NO",
                ]
            ],
        ),
        "<h3>Lines per landing day</h3>",
        _bars(figures["lines_per_day"]),
        "<h3>Rejected lines by reason</h3>",
        _bars(list(figures["rejected_by_reason"].items())),
        *_quarantine_html(figures["quarantine"]),
        "<h2>Audience</h2><h3>Users by highest segment</h3>",
        _bars(list(figures["segments"].items())),
        "<h3>Fans and hardcore fans per category</h3>",
        _table(
            ["category", "fans", "hardcore fans"], [list(r) for r in figures["fans_per_category"]]
        ),
        "<h3>Lifecycle stages</h3>",
        _bars(list(figures["lifecycle"].items())),
        "<h3>Retention: share of viewers active N days after their first day</h3>",
        _line(
            [(d, r) for d, r, _ in figures["retention"]],
            "days since first activity",
            "active",
            percent=True,
        ),
        "<h2>Recommender</h2><h3>NDCG@10 of each trained version (the gate's metric)</h3>",
        _line(
            [(i + 1, m["candidate"]) for i, m in enumerate(models)],
            "model version (in order)",
            "NDCG@10",
            percent=False,
        ),
        _table(
            ["version", "decided at", "candidate NDCG@10", "popularity NDCG@10", "promoted"],
            [
                [
                    m["version"],
                    m["decided_at"],
                    f"{m['candidate']:.4f}",
                    f"{m['baseline']:.4f}" if m["baseline"] is not None else "–",
                    "yes" if m["passed"] else "no",
                ]
                for m in models
            ],
        ),
        "<h2>CRM gates (Great Expectations)</h2>",
        _table(
            ["table", "result", "expectations", "failed", "results file"],
            [
                [
                    g["table"],
                    "pass" if g["success"] else "FAIL",
                    g["evaluated"],
                    len(g["failures"]),
                    g["path"],
                ]
                for g in figures["gates"]
            ],
        ),
    ]
    failures = [(g["table"], f) for g in figures["gates"] for f in g["failures"]]
    if failures:
        sections.append("<h3>Failed expectations</h3>")
        sections.append(
            _table(
                ["table", "failure"],
                [[t, json.dumps(f, default=str)[:400]] for t, f in failures],
            )
        )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:900px;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}svg text{font-size:12px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ottp pipeline report</title>"
        f"<style>{style}</style></head><body><h1>Pipeline report</h1>"
        f"<p>Generated {generated_at.isoformat(timespec='seconds')} UTC.</p>"
        + "".join(sections)
        + "</body></html>"
    )


def build(
    warehouse_path: Path | None = None,
    data_dir: Path | None = None,
    out_path: Path | None = None,
) -> Report:
    """Write the report (atomically: a reader never sees half a page) and return its figures."""
    s = config.settings()
    warehouse_path = Path(warehouse_path or s.warehouse_path)
    data_dir = Path(data_dir or s.data_dir)
    out_path = Path(out_path or s.reports_dir / "pipeline.html")
    reconciliation = load.reconciliation(warehouse_path)
    con = connect(warehouse_path)
    try:
        missing = [
            f"{schema}.{name}"
            for schema, name in [
                ("marts", "user_segments"),
                ("marts", "user_lifecycle"),
                ("marts", "sessions"),
                ("marts", "user_category_segments"),
            ]
            if not _has_table(con, schema, name)
        ]
        if missing:
            raise RuntimeError(f"build the marts first; missing: {', '.join(missing)}")
        figures = _figures(con, data_dir, reconciliation)
    finally:
        con.close()
    generated_at = datetime.now(UTC).replace(tzinfo=None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(_html(figures, generated_at))
    tmp.replace(out_path)
    return Report(path=out_path, generated_at=generated_at, figures=figures)
