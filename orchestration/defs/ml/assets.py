from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from ml import churn, flows, gate, rails
from ml import evaluation as ev
from ml import interactions as ia
from ml import warehouse as wh
from orchestration.defs.resources import WarehouseResource
from ottp.warehouse import connect

GROUP = "ml"
OWNERS = ["team:personalisation"]
TAGS = {"layer": "ml"}


def marts(*names: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(["marts", n]) for n in names]


def ml_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["ml", name])


@contextmanager
def warehouse_connection(warehouse: WarehouseResource) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(warehouse.warehouse)
    try:
        yield con
    finally:
        con.close()


def column_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in table.schema])


def table_metadata(name: str, table: pa.Table | None, rows: int) -> dict:
    out = {"dagster/row_count": rows, "dagster/table_name": f"warehouse.ml.{name}"}
    if table is not None:
        out["dagster/column_schema"] = column_schema(table)
    return out


def _registry(warehouse: WarehouseResource):
    return flows.registry(Path(warehouse.data_dir))


class EvaluationConfig(dg.Config):
    """Held-out windows (shortened when the history is short) and the ALS tuning grid."""

    test_days: int = 14
    validation_days: int = 14
    factors: list[int] = list(ev.ALS_GRID["factors"])
    regularization: list[float] = list(ev.ALS_GRID["regularization"])
    alpha: list[float] = list(ev.ALS_GRID["alpha"])
    iterations: list[int] = list(ev.ALS_GRID["iterations"])
    # training-data variants compared with the chosen weights (the evidence in the docs)
    weights_variants: list[str] = [w.name for w in ev.EvalConfig().variants]


class GateConfig(dg.Config):
    """The promotion gate's margins on NDCG@10 (relative)."""

    min_lift_over_baseline: float = 0.10
    max_drop_vs_promoted: float = 0.05


@dg.asset(
    key=ml_key("training_interactions"),
    # user_lifecycle: the marts' as_of (ml/warehouse.py)
    deps=marts("plays", "user_title_interests", "titles", "user_lifecycle"),
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "duckdb"},
    pool="warehouse_writer",
    description="One row per user and title with evidence before as_of: the evidence class "
    "(completed, liked, watched, abandoned, disliked ...), its signed, recency-decayed value "
    "(the recommender's training data) and whether the title is excluded from the user's "
    "recommendations (watched or disliked). See docs/recommendations.md.",
)
def training_interactions(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse_connection(warehouse) as con:
        table, info = flows.training_interactions(con)
        rows = wh.write_tables(con, {"training_interactions": table})["training_interactions"]
    evidence = "\n".join(
        f"| {name} | {v['pairs']:,} | {v['mean_value']:+.3f} |"
        for name, v in sorted(info["by_evidence"].items())
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata("training_interactions", table, rows),
            "as_of": str(info["as_of"]),
            "users": info["users"],
            "titles": info["titles"],
            "weights": dg.MetadataValue.json(info["weights"]),
            "evidence": dg.MetadataValue.md(
                "| evidence | pairs | mean value |\n|---|---:|---:|\n" + evidence
            ),
        }
    )


@dg.asset(
    key=ml_key("model_evaluation"),
    deps=[
        ml_key("training_interactions"),
        *marts("plays", "user_title_interests", "titles", "title_engagement", "user_segments"),
    ],
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "duckdb"},
    pool="warehouse_writer",
    description="Offline evaluation on time-based splits: a small ALS grid, BPR and BM25 item-kNN "
    "tuned on a validation split carved from the training period, then compared on the last "
    "days held out with the popularity baseline, the promoted model (re-fitted on the same "
    "data) and training-data variants; precision, recall, NDCG, MAP at 10, catalog coverage, "
    "per fan segment. One row per split, model, role and segment.",
)
def model_evaluation(
    config: EvaluationConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    axes = {
        "factors": config.factors,
        "regularization": config.regularization,
        "alpha": config.alpha,
        "iterations": config.iterations,
    }
    settings = ev.EvalConfig(
        test_days=config.test_days,
        validation_days=config.validation_days,
        tuning=tuple(ev.grid("als", axes)),
        variants=tuple(ia.VARIANTS[name] for name in config.weights_variants),
    )
    with warehouse_connection(warehouse) as con:
        report = flows.evaluate(con, _registry(warehouse), settings)
        table = report.rows()
        rows = wh.write_tables(con, {"model_evaluation": table})["model_evaluation"]
    k = report.k
    cand, base = report.test("candidate"), report.test("baseline")
    numbers = {}
    for prefix, r in (("candidate", cand), ("popularity", base)):
        if r is not None:
            for m in ("precision", "recall", "ndcg", "map", "coverage"):
                v = r.summary.get(f"{m}_at_{k}")
                if v is not None and v == v:
                    numbers[f"{prefix}_{m}_at_{k}"] = float(v)
    return dg.MaterializeResult(
        metadata={
            **table_metadata("model_evaluation", table, rows),
            **numbers,
            "candidate": report.candidate.label,
            "windows": dg.MetadataValue.json(report.window_text()),
            "report": dg.MetadataValue.md(flows.evaluation_markdown(report)),
        }
    )


@dg.asset(
    key=ml_key("recommender_model"),
    deps=[ml_key("training_interactions"), ml_key("model_evaluation")],
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "implicit"},
    pool="warehouse_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset=ml_key("recommender_model"),
            description="The new model beats the popularity baseline by the margin and is not "
            "worse than the promoted model beyond the tolerance (NDCG@10 on the held-out days). "
            "When it fails, the promoted model stays and keeps serving.",
        )
    ],
    description="The evaluated candidate fitted on all the training data and saved as a new "
    "version under $OTTP_DATA_DIR/models/<version>/ (arrays + metadata: parameters, data "
    "window, metrics, code version); promoted only when it passes the gate.",
)
def recommender_model(
    context: dg.AssetExecutionContext, config: GateConfig, warehouse: WarehouseResource
):
    reg = _registry(warehouse)
    policy = gate.GatePolicy(
        min_lift_over_baseline=config.min_lift_over_baseline,
        max_drop_vs_promoted=config.max_drop_vs_promoted,
    )
    with warehouse_connection(warehouse) as con:
        training = flows.train_and_gate(con, reg, policy)
    d = training.decision
    numbers = {
        "candidate_ndcg_at_10": d.candidate,
        "baseline_ndcg_at_10": d.baseline,
        "promoted_ndcg_at_10": d.promoted,
        "lift_over_baseline": d.lift_over_baseline,
        "change_vs_promoted": d.change_vs_promoted,
    }
    numbers = {k: float(v) for k, v in numbers.items() if v is not None and v == v}
    if not d.passed:
        context.log.warning("Gate failed, %s stays promoted: %s", training.promoted, d.reasons)
    yield dg.MaterializeResult(
        metadata={
            "version": training.version,
            "promoted_version": training.promoted or "none",
            "is_promoted": d.passed,
            "model": dg.MetadataValue.json(training.metadata["params"]),
            "model_kind": training.metadata.get("model_kind", ""),
            "path": dg.MetadataValue.path(str(reg.root / training.version)),
            "data_window": dg.MetadataValue.json(training.metadata["data_window"]),
            "code": dg.MetadataValue.json(training.metadata["code"]),
            "gate": dg.MetadataValue.md(d.markdown()),
            **numbers,
        }
    )
    yield dg.AssetCheckResult(
        check_name="promotion_gate",
        passed=d.passed,
        metadata={
            **numbers,
            "version": training.version,
            "promoted_version": training.promoted or "none",
            "reasons": "; ".join(d.reasons),
            "gate": dg.MetadataValue.md(d.markdown()),
        },
    )


@dg.asset(
    key=ml_key("recommendations"),
    deps=[
        ml_key("recommender_model"),
        ml_key("training_interactions"),
        *marts("users", "titles", "plays", "user_title_interests"),
        dg.AssetKey(["staging", "stg_navigation_events"]),
    ],
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "duckdb", "implicit"},
    pool="warehouse_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "recommendations_respect_exclusions",
            asset=ml_key("recommendations"),
            description="No recommendation of a title the user watched, completed or "
            "disliked, of an unavailable title, or of one out of the catalog; every reason "
            "that names a title says what the user did with it, and the marts agree: "
            "'watched' a valid play of it, 'liked' a like, 'rated X n/5' a rating of n.",
        )
    ],
    description="Top 50 titles per user (rank, score) from the promoted model, each with a "
    "reason naming the title the user watched, liked or rated well that contributes most "
    "(reason_kind: watched, liked or rated); users without history get the popularity of the "
    "categories they browsed, else global popularity. One row per user and rank.",
)
def recommendations(warehouse: WarehouseResource):
    with warehouse_connection(warehouse) as con:
        table, info = flows.recommendations(con, _registry(warehouse))
        rows = wh.write_tables(con, {"recommendations": table})["recommendations"]
        violations = exclusion_violations(con)
    yield dg.MaterializeResult(
        metadata={
            **table_metadata("recommendations", table, rows),
            "model_version": info["model_version"] or "none (cold start only)",
            "users": info["users"],
            "warm_users": info["warm_users"],
            "cold_users": info["cold_users"],
            "rows_with_a_named_title": info["with_a_named_title"],
            **{f"reasons_{kind}": n for kind, n in info["reasons_by_kind"].items()},
        }
    )
    yield dg.AssetCheckResult(
        check_name="recommendations_respect_exclusions",
        passed=not any(violations.values()),
        metadata=violations,
    )


def exclusion_violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        "watched_or_disliked": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            semi join ml.training_interactions as i
                on r.user_id = i.user_id and r.title_id = i.title_id and i.is_excluded
        """,
        ),
        "unavailable_or_unknown": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            left join marts.titles as t on r.title_id = t.title_id
            where not coalesce(t.is_available, false)
        """,
        ),
        "completed": wh.scalar(
            con,
            """
            select count(*) from ml.recommendations as r
            semi join marts.plays as p
                on r.user_id = p.user_id and r.title_id = p.title_id and p.is_complete
        """,
        ),
        "reason_not_true": wh.scalar(con, REASON_NOT_TRUE_SQL),
    }


# A reason that names a title must say what the user did with it, in the words the
# recommender uses, and the marts must agree: a valid play for 'watched', a like for
# 'liked', that rating for 'rated'. A reason without a title names no kind.
REASON_NOT_TRUE_SQL = """
select count(*)
from ml.recommendations as r
left join marts.titles as t on r.reason_title_id = t.title_id
left join marts.user_title_interests as i
    on r.user_id = i.user_id and r.reason_title_id = i.title_id
where
    (r.reason_title_id is null) <> (r.reason_kind is null)
    or (
        r.reason_kind is not null
        and (
            r.reason is distinct from 'Because you ' || r.reason_kind || ' ' || t.title_name
                || case when r.reason_kind = 'rated'
                    then ' ' || cast(i.rating as varchar) || '/5' else '' end
            or case r.reason_kind
                when 'watched' then not exists (
                    select 1 from marts.plays as p
                    where p.user_id = r.user_id and p.title_id = r.reason_title_id
                        and p.is_valid_play
                )
                when 'liked' then not coalesce(i.is_liked, false)
                when 'rated' then i.rating is null
                else true
            end
        )
    )
"""


@dg.asset(
    key=ml_key("similar_titles"),
    deps=[ml_key("recommender_model"), *marts("titles", "title_engagement")],
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "duckdb"},
    pool="warehouse_writer",
    description="Title -> top 20 similar available titles ('you liked X, you'll also like Y'): "
    "the promoted model's collaborative similarity blended with content similarity (same "
    "category, shared keywords), leaning on content for titles with few viewers, and only on "
    "content for titles the model does not know yet. One row per title and rank.",
)
def similar_titles(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse_connection(warehouse) as con:
        table, info = flows.similar_titles(con, _registry(warehouse))
        rows = wh.write_tables(con, {"similar_titles": table})["similar_titles"]
    return dg.MaterializeResult(
        metadata={
            **table_metadata("similar_titles", table, rows),
            "model_version": info["model_version"] or "none (content only)",
            "titles": info["titles"],
            "titles_unknown_to_the_model": info["titles_unknown_to_the_model"],
            "mean_collaborative_weight": info["mean_collaborative_weight"],
        }
    )


@dg.asset(
    key=ml_key("home_rails"),
    deps=[
        ml_key("recommendations"),
        ml_key("similar_titles"),
        ml_key("training_interactions"),
        *marts(
            "continue_watching",
            "next_episodes",
            "user_category_segments",
            "titles",
            "plays",
            "users",
        ),
    ],
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"duckdb", "sql"},
    pool="warehouse_writer",
    description="The home screen per user: an ordered list of rails (continue watching, next "
    "episodes, top picks, because you watched X, top picks in a category the user is a fan "
    "of, trending) with their titles, each title on one rail only. One row per user, rail and "
    "item; what a dynamic home screen reads.",
)
def home_rails(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse_connection(warehouse) as con:
        rows = wh.write_tables(con, {"home_rails": rails.home_rails(wh.as_of(con))})["home_rails"]
        per_type = con.sql(
            "select rail_type, count(distinct user_id) as users, count(*) as items "
            "from ml.home_rails group by rail_type order by min(rail_rank)"
        ).fetchall()
    return dg.MaterializeResult(
        metadata={
            **table_metadata("home_rails", None, rows),
            "rails": dg.MetadataValue.md(
                "| rail | users | items |\n|---|---:|---:|\n"
                + "\n".join(f"| {t} | {u:,} | {n:,} |" for t, u, n in per_type)
            ),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ml_key("taste_clusters"),
            deps=[
                ml_key("recommender_model"),
                ml_key("training_interactions"),
                *marts("user_category_affinity", "titles"),
            ],
            group_name=GROUP,
            owners=OWNERS,
            tags=TAGS,
            kinds={"python", "scikitlearn"},
            description="Taste clusters (k-means on users' ALS factors, k by silhouette), each "
            "described by its top categories (share and lift) and the titles that suit it; a "
            "CRM segment. One row per cluster.",
        ),
        dg.AssetSpec(
            ml_key("user_taste_clusters"),
            # the same op computes both tables (automation requests them together)
            deps=[
                ml_key("recommender_model"),
                ml_key("training_interactions"),
                *marts("user_category_affinity", "titles"),
            ],
            group_name=GROUP,
            owners=OWNERS,
            tags=TAGS,
            kinds={"python", "scikitlearn"},
            description="Each viewer's taste cluster and their affinity to it (cosine to the "
            "cluster centre). One row per user.",
        ),
    ],
    pool="warehouse_writer",
)
def taste_clusters(warehouse: WarehouseResource):
    with warehouse_connection(warehouse) as con:
        clusters, members, info = flows.taste_clusters(con, _registry(warehouse))
        counts = wh.write_tables(con, {"taste_clusters": clusters, "user_taste_clusters": members})
    described = "\n".join(
        f"| {c['cluster_id']} | {c['cluster_name']} | {c['user_count']:,} | "
        f"{', '.join(c['top_categories'])} | {', '.join(c['top_title_names'][:3])} |"
        for c in clusters.to_pylist()
    )
    yield dg.MaterializeResult(
        asset_key=ml_key("taste_clusters"),
        metadata={
            **table_metadata("taste_clusters", clusters, counts["taste_clusters"]),
            "k": info["k"],
            "silhouette": float(info["silhouette"])
            if info["silhouette"] == info["silhouette"]
            else 0.0,
            "basis": info["basis"],
            "clusters": dg.MetadataValue.md(
                "| id | name | users | top categories | suits |\n|---:|---|---:|---|---|\n"
                + described
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ml_key("user_taste_clusters"),
        metadata=table_metadata("user_taste_clusters", members, counts["user_taste_clusters"]),
    )


@dg.asset(
    key=ml_key("churn_risk"),
    deps=marts("users", "plays", "sessions", "user_title_interests", "user_lifecycle"),
    group_name=GROUP,
    owners=OWNERS,
    tags=TAGS,
    kinds={"python", "scikitlearn", "duckdb"},
    pool="warehouse_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "churn_model_beats_rule",
            asset=ml_key("churn_risk"),
            description="On the later (held-out) period, the model's AUC is above the "
            "rule-based baseline's (days since the last play).",
        )
    ],
    description="Churn risk per active subscriber: the calibrated probability of cancelling "
    "or stopping watching within the horizon (logistic regression on engagement features), "
    "its band, its main driver, and the CRM fields (contactable, lifecycle stage). Evaluated by "
    "AUC on a later period against a rule-based baseline. One row per active subscriber.",
)
def churn_risk(warehouse: WarehouseResource):
    with warehouse_connection(warehouse) as con:
        result = churn.churn_risk(con, wh.as_of(con))
        rows = wh.write_tables(con, {"churn_risk": result.scores})["churn_risk"]
    e = result.evaluation
    numbers = {
        k: e[k] for k in ("auc_model", "auc_rule", "brier_model", "brier_base_rate") if k in e
    }
    reliability = "\n".join(
        f"| {b['bin']} | {b['users']} | {b['predicted']:.3f} | {b['observed']:.3f} |"
        for b in e.get("reliability", [])
    )
    yield dg.MaterializeResult(
        metadata={
            **table_metadata("churn_risk", result.scores, rows),
            **numbers,
            "method": e["method"],
            "horizon_days": e["horizon_days"],
            "evaluation": dg.MetadataValue.json(
                {k: v for k, v in e.items() if k not in ("reliability",)}
            ),
            "calibration": dg.MetadataValue.md(
                "| bin | users | predicted | observed |\n|---:|---:|---:|---:|\n" + reliability
            )
            if reliability
            else dg.MetadataValue.md("not evaluated"),
            "notes": "; ".join(result.notes) or "none",
        }
    )
    evaluated = "auc_model" in e
    yield dg.AssetCheckResult(
        check_name="churn_model_beats_rule",
        passed=bool(evaluated and e["auc_model"] > e["auc_rule"]),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**numbers, "notes": "; ".join(result.notes) or "none"},
    )
