"""End-to-end steps over the warehouse, one per `ml` table (the Dagster assets call these).

Each step reads the marts (and the ml tables before it), computes, and returns
Arrow tables plus a summary; writing them is ml.warehouse.write_tables, in one
transaction per step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml import clusters as cl
from ml import evaluation as ev
from ml import gate
from ml import interactions as ia
from ml import recommend as rec
from ml import similar as sim
from ml import warehouse as wh
from ml.models import ModelSpec, fit, positive_part
from ml.registry import Artifact, Registry, code_version

N_RECOMMENDATIONS = 50
GATE_METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10")


def registry(data_dir: Path) -> Registry:
    return Registry(Path(data_dir) / "models")


def _catalog(con: duckdb.DuckDBPyConnection) -> pa.Table:
    t = ia.catalog(con)
    ids = np.asarray(t["title_id"].to_numpy(zero_copy_only=False), dtype=object)
    return t.take(pa.array(np.argsort(ids))) if np.any(ids[1:] < ids[:-1]) else t


def _ids(t: pa.Table, column: str) -> np.ndarray:
    return np.asarray(t[column].to_numpy(zero_copy_only=False), dtype=object)


# --------------------------------------------------------------------------- interactions


def training_interactions(
    con: duckdb.DuckDBPyConnection, weights: ia.Weights = ia.GRADED
) -> tuple[pa.Table, dict]:
    as_of = wh.as_of(con)
    t = ia.interactions(con, as_of, weights=weights)
    counts = t.group_by("evidence").aggregate([("value", "count"), ("value", "mean")])
    by_evidence = {
        row["evidence"]: {
            "pairs": row["value_count"],
            "mean_value": round(row["value_mean"] or 0, 3),
        }
        for row in counts.to_pylist()
    }
    info = {
        "as_of": as_of,
        "pairs": t.num_rows,
        "users": len(pc.unique(t["user_id"])) if t.num_rows else 0,
        "titles": len(pc.unique(t["title_id"])) if t.num_rows else 0,
        "by_evidence": by_evidence,
        "weights": weights.to_dict(),
    }
    return t, info


def _training_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    return con.sql("select * from ml.training_interactions").to_arrow_table()


# --------------------------------------------------------------------------- evaluation


def evaluate(
    con: duckdb.DuckDBPyConnection, reg: Registry, config: ev.EvalConfig | None = None
) -> ev.Report:
    """The offline evaluation, with the promoted model re-fitted as the champion."""
    config = config or ev.EvalConfig()
    champion = None
    promoted = reg.promoted()
    if promoted:
        meta = reg.metadata(promoted)
        champion = (ModelSpec.from_dict(meta["model"]), meta.get("weights", {}).get("name", ""))
    return ev.evaluate_platform(con, wh.as_of(con), config, champion=champion)


def evaluation_markdown(report: ev.Report) -> str:
    k = report.k
    test = [r for r in report.results if r.split == "test"]
    chart = ev.bar_chart(
        [
            (
                f"{r.role}:{r.weights}"
                if r.role == "weights_variant"
                else r.role + ":" + r.spec.kind,
                r.metric(f"ndcg_at_{k}"),
            )
            for r in test
        ]
    )
    base = report.find("test", "weights_variant")
    variants = []
    for r in test:
        if r.role == "weights_variant" and base is not None and r.weights != base.weights:
            d, se, n = ev.paired_difference(base, r)
            variants.append(
                f"| {r.weights} | {r.metric(f'ndcg_at_{k}'):.4f} | {d:+.4f} ± {1.96 * se:.4f} |"
            )
    parts = [
        f"Candidate: **{report.candidate.label}** (best validation NDCG@{k}); "
        f"held-out windows: {report.window_text()}",
        report.markdown(),
        f"NDCG@{k} on the test split:",
        chart,
    ]
    if variants:
        parts += [
            f"Training data choice ({report.weights.name}) against variants, same model, "
            f"paired per user on the test split (difference, 95% interval):",
            f"| variant | NDCG@{k} | {report.weights.name} minus variant |\n|---|---:|---:|\n"
            + "\n".join(variants),
        ]
    if report.notes:
        parts.append("Notes: " + "; ".join(report.notes))
    return "\n\n".join(parts)


def gate_inputs(con: duckdb.DuckDBPyConnection, metric: str) -> dict:
    """The latest evaluation's candidate, baseline and champion rows (test, all users)."""
    if metric not in GATE_METRICS:
        raise ValueError(f"the gate reads one of {GATE_METRICS}, not {metric!r}")
    rows = (
        con.sql(
            f"""
        select role, model, model_kind, params, weights, {metric} as value, users
        from ml.model_evaluation
        where split = 'test' and segment = 'all'
            and role in ('candidate', 'baseline', 'champion')
        """
        )
        .to_arrow_table()
        .to_pylist()
    )
    by_role = {r["role"]: r for r in rows}
    if "candidate" not in by_role:
        raise ValueError("ml.model_evaluation holds no candidate: run the evaluation first")
    return by_role


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


@dataclass
class Training:
    version: str
    decision: gate.GateDecision
    promoted: str | None
    metadata: dict = field(default_factory=dict)


def train_and_gate(
    con: duckdb.DuckDBPyConnection,
    reg: Registry,
    policy: gate.GatePolicy | None = None,
    seed: int = 42,
) -> Training:
    """Fit the evaluated candidate on all the data, version it, promote it if it passes."""
    policy = policy or gate.GatePolicy()
    inputs = gate_inputs(con, policy.metric)
    cand = inputs["candidate"]
    spec = ModelSpec(cand["model_kind"], json.loads(cand["params"]))
    decision = gate.decide(
        _nan(cand["value"]),
        _nan(inputs.get("baseline", {}).get("value")),
        _nan(inputs["champion"]["value"]) if "champion" in inputs else None,
        policy,
    )
    as_of = wh.as_of(con)
    catalog = _catalog(con)
    table = _training_table(con)
    data = ia.build(table, _ids(catalog, "title_id"))
    model = fit(spec, data.matrix, seed=seed)
    window = con.sql(
        "select min(last_interaction_at), max(last_interaction_at) from ml.training_interactions"
    ).fetchall()[0]
    evaluation = (
        con.sql(
            "select split, role, model, weights, users, precision_at_10, recall_at_10, "
            "ndcg_at_10, map_at_10, coverage_at_10, train_end, heldout_end "
            "from ml.model_evaluation where segment = 'all' and role <> 'tuning'"
        )
        .to_arrow_table()
        .to_pylist()
    )
    weights = ia.VARIANTS.get(cand["weights"], ia.GRADED).to_dict()
    metadata = {
        "model_kind": spec.kind,
        "params": dict(spec.params),
        "weights": weights,
        "seed": seed,
        "data_window": {
            "as_of": str(as_of),
            "first_interaction_at": str(window[0]),
            "last_interaction_at": str(window[1]),
            "pairs": int(data.matrix.nnz),
            "users": int(data.matrix.shape[0]),
        },
        "metrics": {
            "test": {policy.metric: decision.candidate},
            "baseline": {policy.metric: decision.baseline},
            "evaluation": evaluation,
        },
        "gate": {**decision.to_dict(), "policy": policy.to_dict()},
        "code": code_version(),
    }
    version = reg.save(model, data.user_ids, data.title_ids, metadata)
    reg.record(version, {"passed": decision.passed, "gate": decision.to_dict()})
    return Training(version, decision, reg.promoted(), metadata)


# --------------------------------------------------------------------------- outputs


def promoted(reg: Registry) -> Artifact | None:
    version = reg.promoted()
    return reg.load(version) if version else None


def recommendations(
    con: duckdb.DuckDBPyConnection, reg: Registry, n: int = N_RECOMMENDATIONS
) -> tuple[pa.Table, dict]:
    """Top-n for every user from the promoted model; cold start for the rest."""
    as_of = wh.as_of(con)
    artifact = promoted(reg)
    catalog = _catalog(con)
    history = _training_table(con)
    users = rec.target_users(con)
    parts = []
    if artifact is not None:
        warm, cold = rec.warm_recommendations(artifact, history, users, catalog, n)
        parts.append(warm)
    else:
        cold = users
    excluded = history.filter(history["is_excluded"])
    use_clicks = wh.table_exists(con, "staging", "stg_navigation_events")
    cold_table = rec.cold_start(con, cold, excluded, as_of, n, use_clicks=use_clicks)
    parts.append(cold_table.cast(parts[0].schema) if parts else cold_table)
    table = pa.concat_tables(parts)
    info = {
        "model_version": artifact.version if artifact else None,
        "users": len(users),
        "warm_users": len(users) - len(cold),
        "cold_users": len(cold),
        "rows": table.num_rows,
        "with_a_named_title": int(pc.sum(pc.is_valid(table["reason_title_id"])).as_py() or 0),
        "reasons_by_kind": {
            kind: int(pc.sum(pc.equal(table["reason_kind"], kind)).as_py() or 0)
            for kind in rec.REASON_KINDS
        },
    }
    return table, info


def similar_titles(
    con: duckdb.DuckDBPyConnection, reg: Registry, n: int = 20
) -> tuple[pa.Table, dict]:
    artifact = promoted(reg)
    catalog = _catalog(con)
    viewers = catalog["viewer_count"].to_numpy(zero_copy_only=False)
    table = sim.similar_titles(
        catalog,
        artifact.model if artifact else None,
        artifact.title_ids if artifact else None,
        viewers,
        n=n,
    )
    known = set() if artifact is None else set(artifact.title_ids.tolist())
    new_titles = [t for t in _ids(catalog, "title_id") if t not in known]
    info = {
        "model_version": artifact.version if artifact else None,
        "titles": catalog.num_rows,
        "titles_unknown_to_the_model": len(new_titles),
        "rows": table.num_rows,
        "mean_collaborative_weight": float(np.mean(table["collaborative_weight"]))
        if table.num_rows
        else math.nan,
    }
    return table, info


def taste_clusters(
    con: duckdb.DuckDBPyConnection, reg: Registry, seed: int = 42
) -> tuple[pa.Table, pa.Table, dict]:
    artifact = promoted(reg)
    catalog = _catalog(con)
    history = _training_table(con)
    shares = con.sql(
        """
        select user_id, category, coalesce(share_of_watch_time, 0) as share
        from marts.user_category_affinity
        where watch_time_s > 0
        """
    ).to_arrow_table()
    users = np.unique(_ids(shares, "user_id"))
    categories = np.unique(_ids(shares, "category")) if shares.num_rows else np.array([], object)
    share_m = np.zeros((len(users), len(categories)))
    r = ia.lookup(users, _ids(shares, "user_id"))
    c = ia.lookup(categories, _ids(shares, "category"))
    share_m[r, c] = shares["share"].to_numpy(zero_copy_only=False)
    title_ids = _ids(catalog, "title_id")
    ok = np.asarray(catalog["is_available"].to_numpy(zero_copy_only=False), dtype=bool)
    names = _ids(catalog, "title_name")
    series = _ids(catalog, "series_id")

    title_scores = None
    features = share_m
    basis = "category shares"
    if artifact is not None and artifact.model.kind == "als":
        data = ia.build(history, artifact.title_ids, user_ids=users)
        vectors = artifact.model.fold_in(data.matrix)
        has = np.diff(positive_part(data.matrix).indptr) > 0
        users, features, share_m = users[has], vectors[has], share_m[has]
        pos = ia.lookup(artifact.title_ids, title_ids)
        title_scores = np.zeros((len(title_ids), vectors.shape[1]), dtype=np.float32)
        title_scores[pos >= 0] = artifact.model.item_factors[pos[pos >= 0]]
        ok &= pos >= 0
        basis = f"ALS user factors ({artifact.version})"
    counts = ia.build(history, title_ids, user_ids=users)
    clusters, members, info = cl.taste_clusters(
        users,
        features,
        share_m,
        categories,
        title_ids,
        names,
        title_scores,
        user_title_counts=positive_part(counts.matrix),
        title_ok=ok,
        title_groups=np.where(
            pc.is_null(catalog["series_id"]).to_numpy(zero_copy_only=False), title_ids, series
        ),
        seed=seed,
    )
    version = artifact.version if artifact else "none"
    clusters = clusters.append_column("model_version", pa.array([version] * clusters.num_rows))
    members = members.append_column("model_version", pa.array([version] * members.num_rows))
    info.update({"basis": basis, "users": len(users)})
    return clusters, members, info


def as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    return wh.as_of(con)
