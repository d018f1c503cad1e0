"""The recommender and the other ML tables as assets (group ml): the library in ml/ does
the work; these assets read the marts, write schema ml and report what they wrote."""

import dagster as dg

from ml import churn, flows, gate, rails
from ml import evaluation as ev
from ml import interactions as ia
from ml import warehouse as wh
from orchestration.defs.ml import checks
from orchestration.defs.ml.config import EvaluationConfig, GateConfig
from orchestration.defs.ml.tables import (
    marts,
    ml_key,
    registry,
    table_metadata,
    warehouse_connection,
)
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags

OWNERS = [Owner.PERSONALISATION]
TAGS = layer_tags("ml")


@dg.asset(
    key=ml_key("training_interactions"),
    # user_lifecycle: the marts' as_of (ml/warehouse.py)
    deps=marts("plays", "user_title_interests", "titles", "user_lifecycle"),
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.DUCKDB},
    pool=WAREHOUSE_WRITER_POOL,
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
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.DUCKDB},
    pool=WAREHOUSE_WRITER_POOL,
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
        ease=tuple(ev.grid("ease", {"l2": config.ease_l2})),
        variants=tuple(ia.VARIANTS[name] for name in config.weights_variants),
    )
    with warehouse_connection(warehouse) as con:
        report = flows.evaluate(con, registry(warehouse), settings)
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
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.IMPLICIT},
    pool=WAREHOUSE_WRITER_POOL,
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
    reg = registry(warehouse)
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
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.DUCKDB, Kind.IMPLICIT},
    pool=WAREHOUSE_WRITER_POOL,
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
        table, info = flows.recommendations(con, registry(warehouse))
        rows = wh.write_tables(con, {"recommendations": table})["recommendations"]
        violations = checks.exclusion_violations(con)
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


@dg.asset(
    key=ml_key("similar_titles"),
    deps=[ml_key("recommender_model"), *marts("titles", "title_engagement")],
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.DUCKDB},
    pool=WAREHOUSE_WRITER_POOL,
    description="Title -> top 20 similar available titles ('you liked X, you'll also like Y'): "
    "the promoted model's collaborative similarity blended with content similarity (same "
    "category, shared keywords), leaning on content for titles with few viewers, and only on "
    "content for titles the model does not know yet. One row per title and rank.",
)
def similar_titles(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse_connection(warehouse) as con:
        table, info = flows.similar_titles(con, registry(warehouse))
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
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.DUCKDB, Kind.SQL},
    pool=WAREHOUSE_WRITER_POOL,
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
            group_name=Group.ML,
            owners=OWNERS,
            tags=TAGS,
            kinds={Kind.PYTHON, Kind.SCIKITLEARN},
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
            group_name=Group.ML,
            owners=OWNERS,
            tags=TAGS,
            kinds={Kind.PYTHON, Kind.SCIKITLEARN},
            description="Each viewer's taste cluster and their affinity to it (cosine to the "
            "cluster centre). One row per user.",
        ),
    ],
    pool=WAREHOUSE_WRITER_POOL,
)
def taste_clusters(warehouse: WarehouseResource):
    with warehouse_connection(warehouse) as con:
        clusters, members, info = flows.taste_clusters(con, registry(warehouse))
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
    group_name=Group.ML,
    owners=OWNERS,
    tags=TAGS,
    kinds={Kind.PYTHON, Kind.SCIKITLEARN, Kind.DUCKDB},
    pool=WAREHOUSE_WRITER_POOL,
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
