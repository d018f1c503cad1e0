"""The `ml` assets in Dagster: materialized on a synthetic warehouse, and the gate's two paths."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from ml.recommend import REASON_KINDS
from tests.ml.ml_marts import build_marts

ML_TABLES = (
    "training_interactions",
    "model_evaluation",
    "recommendations",
    "similar_titles",
    "home_rails",
    "taste_clusters",
    "user_taste_clusters",
    "churn_risk",
)
SMALL_GRID = {
    "factors": [32],
    "regularization": [5.0],
    "alpha": [1.0, 4.0],
    "iterations": [10],
    "weights_variants": ["positive_only"],
}


def _assets():
    from orchestration.defs.ml import assets as a

    return [
        a.training_interactions,
        a.model_evaluation,
        a.recommender_model,
        a.recommendations,
        a.similar_titles,
        a.home_rails,
        a.taste_clusters,
        a.churn_risk,
    ]


def _materialize(root, gate: dict | None = None, only: list[str] | None = None):
    from orchestration.defs.resources import WarehouseResource

    run_config = {"ops": {}}
    if only is None or "model_evaluation" in only:
        run_config["ops"]["ml__model_evaluation"] = {"config": SMALL_GRID}
    if gate:
        run_config["ops"]["ml__recommender_model"] = {"config": gate}
    return dg.materialize(
        _assets(),
        selection=None if only is None else [dg.AssetKey(["ml", name]) for name in only],
        resources={
            "warehouse": WarehouseResource(
                data_dir=str(root),
                landing_dir=str(root / "landing"),
                warehouse_path=str(root / "warehouse.duckdb"),
            )
        },
        run_config=run_config,
        instance=dg.DagsterInstance.ephemeral(),
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml_assets")
    build_marts(root / "warehouse.duckdb")
    first = _materialize(root)
    # a stricter gate than any model can pass: retrain, then serve recommendations again
    second = _materialize(
        root, gate={"min_lift_over_baseline": 100.0}, only=["recommender_model", "recommendations"]
    )
    return root, first, second


def test_every_ml_asset_materializes_and_writes_its_table(runs):
    root, first, _ = runs
    assert first.success
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        for table in ML_TABLES:
            n = con.sql(f"select count(*) from ml.{table}").fetchall()[0][0]
            assert n > 0, table
    finally:
        con.close()
    materialized = {e.asset_key.path[-1] for e in first.get_asset_materialization_events()}
    assert set(ML_TABLES) | {"recommender_model"} <= materialized


def test_first_model_passes_the_gate_and_is_promoted(runs):
    root, first, _ = runs
    checks = _checks(first)
    assert checks["promotion_gate"].passed
    assert checks["recommendations_respect_exclusions"].passed
    assert "churn_model_beats_rule" in checks
    pointer = json.loads((root / "models" / "promoted.json").read_text())
    meta = json.loads((root / "models" / pointer["version"] / "metadata.json").read_text())
    assert {"params", "weights", "data_window", "metrics", "gate", "code"} <= set(meta)
    assert meta["code"]["ottp"]


def test_a_model_failing_the_gate_is_a_failed_check_and_the_promoted_one_keeps_serving(runs):
    root, first, second = runs
    assert second.success  # not a crash
    gate = _checks(second)["promotion_gate"]
    assert not gate.passed
    assert gate.metadata["candidate_ndcg_at_10"].value > 0
    assert gate.metadata["baseline_ndcg_at_10"].value > 0
    assert "popularity baseline" in gate.metadata["reasons"].value
    promoted_first = (
        next(
            e
            for e in first.get_asset_materialization_events()
            if e.asset_key.path[-1] == "recommender_model"
        )
        .materialization.metadata["version"]
        .value
    )
    pointer = json.loads((root / "models" / "promoted.json").read_text())
    assert pointer["version"] == promoted_first
    assert len([p for p in (root / "models").iterdir() if p.is_dir()]) == 2  # both versioned
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        versions = {
            v
            for (v,) in con.sql(
                "select distinct model_version from ml.recommendations where source = 'model'"
            ).fetchall()
        }
    finally:
        con.close()
    assert versions == {promoted_first}


def test_the_exclusions_check_catches_untrue_reasons_and_completed_titles(runs, tmp_path):
    """The check passes on the recommender's own table and fails on each corrupted copy."""
    import shutil

    from orchestration.defs.ml.checks import exclusion_violations

    root, first, _ = runs
    metadata = _checks(first)["recommendations_respect_exclusions"].metadata
    assert metadata["reason_not_true"].value == 0 and metadata["completed"].value == 0
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(root / "warehouse.duckdb", path)
    con = duckdb.connect(str(path))
    try:
        assert not any(exclusion_violations(con).values())
        kinds = dict(
            con.sql("select reason_kind, count(*) from ml.recommendations group by all").fetchall()
        )
        assert kinds.get("watched") and kinds.get("liked") and kinds.get("rated")
        # one row of each kind to corrupt, and titles the user only put on the watchlist,
        # or completed
        pick = """select user_id, rank from ml.recommendations where reason_kind = ?
                  order by user_id, rank limit 1"""
        watched, liked, rated = (con.execute(pick, [k]).fetchone() for k in REASON_KINDS)
        watchlisted = con.execute("""
            select i.user_id, i.title_id, t.title_name from marts.user_title_interests i
            join marts.titles t using (title_id)
            join ml.recommendations r on r.user_id = i.user_id and r.rank = 1
            where i.added_to_watchlist_at is not null and not coalesce(i.is_liked, false)
                and i.rating is null and not exists (select 1 from marts.plays p
                    where p.user_id = i.user_id and p.title_id = i.title_id)
            order by 1, 2 limit 1""").fetchone()
        completed = con.execute("""
            select p.user_id, p.title_id from marts.plays p
            semi join ml.recommendations r on r.user_id = p.user_id
            where p.is_complete order by 1, 2 limit 1""").fetchone()
        corruptions = {
            "reason_not_true": [
                # 'watched' naming a title the user only put on the watchlist
                (
                    """update ml.recommendations set reason_title_id = ?,
                       reason = 'Because you watched ' || ? where user_id = ? and rank = 1""",
                    list(watchlisted[1:]) + [watchlisted[0]],
                ),
                # a watched title claimed as liked
                (
                    """update ml.recommendations set reason_kind = 'liked',
                       reason = replace(reason, 'you watched', 'you liked')
                       where user_id = ? and rank = ?""",
                    list(watched),
                ),
                # the wrong number of stars
                (
                    """update ml.recommendations set reason = regexp_replace(reason,
                       ' [0-9]/5$', ' 1/5') where user_id = ? and rank = ?""",
                    list(rated),
                ),
                # the text says another kind than reason_kind
                (
                    """update ml.recommendations set reason = replace(reason, 'you liked',
                       'you watched') where user_id = ? and rank = ?""",
                    list(liked),
                ),
                # a named title without its kind
                (
                    """update ml.recommendations set reason_kind = null
                       where user_id = ? and rank = ?""",
                    list(watched),
                ),
            ],
            "completed": [
                (
                    "update ml.recommendations set title_id = ? where user_id = ? and rank = 1",
                    [completed[1], completed[0]],
                ),
            ],
        }
        for check, statements in corruptions.items():
            for sql, params in statements:
                con.execute("begin")
                con.execute(sql, params)
                found = exclusion_violations(con)
                con.execute("rollback")
                assert found[check] == 1, (check, sql, found)
    finally:
        con.close()


def test_ml_assets_are_wired_into_the_code_location(data_dir):
    from orchestration.definitions import defs

    d = defs()
    specs = {s.key: s for s in d.resolve_all_asset_specs()}
    ml_specs = {k: s for k, s in specs.items() if k.path[0] == "ml"}
    assert {k.path[-1] for k in ml_specs} == set(ML_TABLES) | {"recommender_model"}
    for spec in ml_specs.values():
        assert spec.group_name == "ml" and spec.owners and spec.kinds and spec.description
    plays = dg.AssetKey(["marts", "plays"])
    assert plays in {
        dep.asset_key for dep in specs[dg.AssetKey(["ml", "training_interactions"])].deps
    }
    checks = {key.name for key in d.resolve_asset_graph().asset_check_keys}
    assert {
        "promotion_gate",
        "recommendations_respect_exclusions",
        "churn_model_beats_rule",
    } <= checks
    selected = d.resolve_job_def("build_warehouse").asset_layer.selected_asset_keys
    assert set(ml_specs) <= selected  # `make run` builds them
