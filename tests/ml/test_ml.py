"""The recommender library (`ml/`) on a small synthetic warehouse: no dbt, no Dagster."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from ml import churn, flows, gate, metrics, rails, recommend, similar
from ml import evaluation as ev
from ml import interactions as ia
from ml import warehouse as wh
from ml.models import ModelSpec, fit
from tests.ml.ml_marts import AS_OF, build_marts

SMALL_GRID = (
    ModelSpec("als", {"factors": 32, "regularization": 5.0, "alpha": 1.0, "iterations": 10}),
)


@pytest.fixture(scope="module")
def marts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml_marts")
    facts = build_marts(root / "warehouse.duckdb")
    return root, facts


@pytest.fixture
def con(marts):
    root, _ = marts
    c = duckdb.connect(str(root / "warehouse.duckdb"))
    yield c
    c.close()


def structured_matrix(users=300, items=120, seed=0) -> sp.csr_matrix:
    """Two taste groups over two halves of the items, plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(users):
        half = u % 2
        picks = rng.choice(items // 2, size=15, replace=False) + half * (items // 2)
        noise = rng.choice(items, size=3, replace=False)
        for i in np.r_[picks, noise]:
            rows.append(u)
            cols.append(i)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))
    m.data[:] = 1
    return m


# --------------------------------------------------------------------------- metrics


def test_metrics_by_hand():
    top = np.array([[1, 2, 3], [4, 5, 6]])
    relevant = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]))
    per = metrics.per_user(top, relevant, 3)
    assert per["precision"][0] == pytest.approx(1 / 3)
    assert per["recall"][0] == pytest.approx(1.0)
    assert per["ndcg"][0] == pytest.approx((1 / np.log2(3)) / 1.0)
    assert per["map"][0] == pytest.approx(0.5)
    assert np.isnan(per["ndcg"][1])  # no held-out item: not counted
    summary = metrics.summarize(per, 3)
    assert summary["users"] == 1
    assert metrics.coverage(np.array([[1, 2], [2, -1]]), 10, 2) == pytest.approx(0.2)


def test_metrics_match_implicit_evaluation():
    """NDCG, MAP and implicit's precision, recomputed from our top-k, equal implicit's."""
    from implicit.evaluation import ranking_metrics_at_k, train_test_split

    full = structured_matrix()
    train, test = train_test_split(full, train_percentage=0.75, random_state=1)
    model = fit(ModelSpec("als", {"factors": 16, "iterations": 5}), train, seed=3)
    theirs = ranking_metrics_at_k(model._implicit(), train, test, K=10, show_progress=False)
    train_data = ia.Interactions(np.arange(train.shape[0]), np.arange(train.shape[1]), train, train)
    ours, _, _ = ev.evaluate(model, train_data, test, k=10)
    assert ours["ndcg_at_10"] == pytest.approx(theirs["ndcg"], rel=1e-6)
    assert ours["map_at_10"] == pytest.approx(theirs["map"], rel=1e-6)
    assert ours["precision_capped_at_10"] == pytest.approx(theirs["precision"], rel=1e-6)


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_bm25_batched_scores_match_implicit_recommend():
    train = structured_matrix(users=60, items=40)
    model = fit(ModelSpec("bm25", {"K": 20}), train)
    from implicit.nearest_neighbours import BM25Recommender

    ref = BM25Recommender(K=20, K1=1.2, B=0.75)
    ref.fit(train, show_progress=False)
    users = np.arange(10)
    ids, scores = model.recommend(train[users], train[users], n=5)
    for u in users:  # the reference recommends one user at a time
        r_ids, r_scores = ref.recommend(u, train[u], N=5)
        ours = ids[u] >= 0  # we leave out titles with no evidence at all (score 0)
        np.testing.assert_allclose(scores[u][ours], r_scores[r_scores > 0], rtol=1e-4)
        np.testing.assert_array_equal(np.sort(ids[u][ours]), np.sort(r_ids[r_scores > 0]))


# --------------------------------------------------------------------------- gate


def test_gate_promotes_a_model_that_beats_the_baseline_by_the_margin():
    d = gate.decide(0.30, 0.20, None)
    assert d.passed and d.lift_over_baseline == pytest.approx(0.5)
    assert "no model promoted yet" in d.reasons


def test_gate_refuses_below_the_margin_over_popularity():
    d = gate.decide(0.21, 0.20, None, gate.GatePolicy(min_lift_over_baseline=0.10))
    assert not d.passed
    assert "popularity baseline" in " ".join(d.reasons)


def test_gate_refuses_a_model_worse_than_the_promoted_one_beyond_the_tolerance():
    policy = gate.GatePolicy(max_drop_vs_promoted=0.05)
    assert not gate.decide(0.28, 0.10, 0.30, policy).passed  # -6.7%
    assert gate.decide(0.29, 0.10, 0.30, policy).passed  # -3.3%: within tolerance
    assert not gate.decide(float("nan"), 0.10, 0.30, policy).passed
    md = gate.decide(0.28, 0.10, 0.30, policy).markdown()
    assert "0.2800" in md and "0.3000" in md


# --------------------------------------------------------------------------- interactions


def test_interactions_classify_and_weigh_the_evidence(con):
    t = ia.interactions(con, AS_OF).to_pandas()
    assert not t.duplicated(["user_id", "title_id"]).any()
    by = t.groupby("evidence")["value"]
    assert (by.max()["disliked"] < 0) and (by.min()["completed"] > 0)
    # abandonment is weak evidence: positive, below every completed title
    assert 0 < by.max()["abandoned"] < by.min()["completed"] / t["recency_weight"].min()
    assert t.loc[t["evidence"] == "liked", "value"].mean() > by.mean()["completed"]
    # the exclusion flag: watched, completed or disliked
    assert t.loc[t["has_watched"], "is_excluded"].all()
    assert t.loc[t["is_complete"], "is_excluded"].all()
    assert t.loc[t["is_disliked"], "is_excluded"].all()


def test_interactions_see_nothing_after_the_cut_off(con):
    cutoff = AS_OF - timedelta(days=10)
    t = ia.interactions(con, cutoff).to_pandas()
    assert t["last_interaction_at"].max() < cutoff
    later = con.sql(
        "select count(*) from marts.user_title_interests where reacted_at >= $c and is_liked",
        params={"c": cutoff},
    ).fetchall()[0][0]
    assert later > 0  # there were later likes, and none leaked in
    recent = ia.interactions(con, AS_OF).to_pandas()
    old = recent.merge(t, on=["user_id", "title_id"], suffixes=("", "_then"))
    # values decay: the same pair is worth less seen from later
    same = old[old["last_interaction_at"] == old["last_interaction_at_then"]]
    assert (same["recency_weight"] < same["recency_weight_then"]).all()


def test_time_split_relevance_is_new_titles_only(con):
    titles = np.asarray(ia.catalog(con)["title_id"].to_pylist(), dtype=object)
    split = ev.time_split(con, "test", AS_OF - timedelta(days=10), AS_OF, titles)
    assert split.relevant.nnz > 0
    assert split.train.exclude.multiply(split.relevant).nnz == 0


def test_evaluation_tunes_on_validation_and_reports_segments(con):
    config = ev.EvalConfig(
        tuning=SMALL_GRID,
        alternatives=(ModelSpec("bm25", {"K": 50}),),
        ease=(ModelSpec("ease", {"l2": 30.0}), ModelSpec("ease", {"l2": 300.0})),
        variants=(ia.POSITIVE_ONLY,),
    )
    report = ev.evaluate_platform(con, wh.as_of(con), config)
    tuning = [r for r in report.results if r.role == "tuning"]
    assert tuning and all(r.split == "validation" for r in tuning)
    # every candidate, EASE included, competes on validation NDCG
    assert {"ease(l2=30)", "ease(l2=300)"} <= {r.spec.label for r in tuning}
    competing = [r for r in tuning if r.spec.kind != "popularity"]
    winner = max(competing, key=lambda r: r.metric("ndcg_at_10"))
    assert report.candidate.label == winner.spec.label
    tested = {r.spec.kind for r in report.results if r.split == "test" and r.role != "baseline"}
    assert {"als", "bm25", "ease"} <= tested  # the best of each grid reaches the test split
    assert report.test("candidate").metric("ndcg_at_10") > report.test("baseline").metric(
        "ndcg_at_10"
    )
    rows = report.rows().to_pandas()
    assert {"all", "fan", "casual"} <= set(rows["segment"])
    test_all = rows[(rows["split"] == "test") & (rows["segment"] == "all")]
    assert test_all["coverage_at_10"].notna().all()
    assert "| model |" in flows.evaluation_markdown(report)


# --------------------------------------------------------------------------- outputs


@pytest.fixture(scope="module")
def promoted(marts):
    """An ALS model on all the data, saved and promoted, and ml.training_interactions."""
    root, _ = marts
    c = duckdb.connect(str(root / "warehouse.duckdb"))
    table, _ = flows.training_interactions(c)
    wh.write_tables(c, {"training_interactions": table})
    titles = np.asarray(ia.catalog(c)["title_id"].to_pylist(), dtype=object)
    data = ia.build(table, titles)
    model = fit(SMALL_GRID[0], data.matrix)
    reg = flows.registry(root)
    version = reg.save(model, data.user_ids, data.title_ids, {"weights": ia.GRADED.to_dict()})
    reg.record(version, {"passed": True})
    c.close()
    return reg, version


def test_recommendations_never_show_watched_disliked_or_unavailable_titles(con, marts, promoted):
    _, facts = marts
    reg, version = promoted
    table, info = flows.recommendations(con, reg, n=20)
    recs = table.to_pandas()
    history = ia.interactions(con, AS_OF).to_pandas()
    excluded = history[history["is_excluded"]]
    assert recs.merge(excluded, on=["user_id", "title_id"]).empty
    assert not recs["title_id"].isin(facts["unavailable_titles"]).any()
    assert not recs["user_id"].isin(facts["deleted_users"]).any()
    assert info["model_version"] == version and info["warm_users"] > 0
    assert not recs.duplicated(["user_id", "title_id"]).any()
    assert recs.groupby("user_id")["rank"].max().max() <= 20


def test_reasons_name_what_the_user_did(con, promoted):
    """A named title was watched (a valid play), liked or rated, as the reason says."""
    reg, _ = promoted
    recs = flows.recommendations(con, reg, n=20)[0].to_pandas()
    model_recs = recs[recs["source"] == "model"]
    assert model_recs["reason_title_id"].notna().mean() > 0.9
    named = model_recs.dropna(subset=["reason_title_id"])
    assert named["reason_kind"].notna().all()
    assert recs[recs["reason_title_id"].isna()]["reason_kind"].isna().all()
    assert set(named["reason_kind"]) == {"watched", "liked", "rated"}
    con.register("named", named[["user_id", "reason_title_id", "reason_kind", "reason"]])
    try:
        wrong = (
            con.sql("""
            select named.*, t.title_name, i.is_liked, i.rating,
                exists (select 1 from marts.plays p where p.user_id = named.user_id
                        and p.title_id = named.reason_title_id and p.is_valid_play) as watched
            from named
            join marts.titles t on t.title_id = named.reason_title_id
            left join marts.user_title_interests i
                on i.user_id = named.user_id and i.title_id = named.reason_title_id
        """)
            .to_arrow_table()
            .to_pandas()
        )
    finally:
        con.unregister("named")
    assert len(wrong) == len(named)
    kind = wrong["reason_kind"]
    assert wrong.loc[kind == "watched", "watched"].all()
    assert wrong.loc[kind == "liked", "is_liked"].fillna(False).all()
    rated = wrong[kind == "rated"]
    assert rated["rating"].notna().all()
    expected = "Because you " + kind + " " + wrong["title_name"]
    expected[kind == "rated"] += " " + rated["rating"].astype(int).astype(str) + "/5"
    assert (wrong["reason"] == expected).all()
    # a watchlist add alone, or a play too short to count, is never a reason
    assert (kind == "watched").sum() > 0


def test_reason_codes_put_a_like_first_then_a_good_rating_then_a_valid_play():
    history = pa.table(
        {
            "is_liked": [True, False, False, False, None, True],
            "rating": pa.array([5, 5, 3, None, 2, None], type=pa.int32()),
            "valid_play_count": [1, 1, 2, 0, 0, 0],
        }
    )
    codes = recommend.reason_codes(history)
    assert codes.tolist() == [recommend.LIKED, recommend.RATED + 5, recommend.WATCHED, 0, 0, 2]
    names = pa.array(["A", "B", "C", "D", "E", "F"])
    kind, text = recommend.reason_text(codes, names)
    assert kind.to_pylist() == ["liked", "rated", "watched", None, None, "liked"]
    assert text.to_pylist() == [
        "Because you liked A",
        "Because you rated B 5/5",
        "Because you watched C",
        None,
        None,
        "Because you liked F",
    ]
    empty = np.zeros(0, dtype=np.int64)
    assert len(recommend._values_at(sp.csr_matrix((0, 3)), empty, empty)) == 0


def test_a_completed_title_is_never_recommended(con, promoted):
    reg, _ = promoted
    con.register("recs", flows.recommendations(con, reg, n=50)[0])
    try:
        completed = con.sql("""
            select count(*) from recs
            semi join marts.plays p
                on p.user_id = recs.user_id and p.title_id = recs.title_id and p.is_complete
        """).fetchall()[0][0]
        skims = con.sql(
            "select count(*) from marts.plays where is_complete and not is_valid_play"
        ).fetchall()[0][0]
    finally:
        con.unregister("recs")
    assert skims > 0 and completed == 0


def test_reason_is_the_largest_contribution_for_item_knn():
    train = structured_matrix(users=40, items=30, seed=2)
    model = fit(ModelSpec("bm25", {"K": 30}), train)
    ids, _ = model.recommend(train, train, n=3)
    reason, strength = recommend.explain(model, train, ids)
    u, slot = 5, 0
    item = ids[u, slot]
    hist = train[u].indices
    contributions = train[u].data * model.similarity[hist, item].toarray().ravel()
    assert reason[u, slot] == hist[np.argmax(contributions)]
    assert strength[u, slot] == pytest.approx(contributions.max(), rel=1e-5)


def test_cold_start_uses_browsed_categories_then_global_popularity(con, marts, promoted):
    _, facts = marts
    reg, _ = promoted
    recs = flows.recommendations(con, reg, n=10)[0].to_pandas()
    cold = recs[recs["user_id"].isin(facts["cold_users"])]
    assert set(cold["user_id"]) == set(facts["cold_users"])
    assert (cold["model_version"] == "cold_start").all()
    titles = ia.catalog(con).to_pandas().set_index("title_id")
    for user, category in facts["clicker_categories"].items():
        top = cold[(cold["user_id"] == user) & (cold["rank"] <= 5)]
        assert (titles.loc[top["title_id"], "category"] == category).all()
        assert (top["source"] == "cold_start_category").all()
    silent = set(facts["cold_users"]) - set(facts["clicker_categories"])
    assert (cold[cold["user_id"].isin(silent)]["source"] == "cold_start_global").all()


def test_similar_titles_blend_and_reach_new_titles(con, marts, promoted):
    _, facts = marts
    reg, _ = promoted
    table, info = flows.similar_titles(con, reg, n=10)
    t = table.to_pandas()
    new = t[t["title_id"] == facts["new_title"]]
    assert len(new) == 10
    assert (new["collaborative_weight"] == 0).all()  # content only
    assert new["is_same_category"].head(3).all()
    assert not t["similar_title_id"].isin(facts["unavailable_titles"]).any()
    assert not t["title_id"].isin(facts["unavailable_titles"]).any()  # no page, no list
    assert (t["title_id"] != t["similar_title_id"]).all()
    assert t["collaborative_weight"].max() > 0.5  # popular titles lean on viewers
    assert info["titles_unknown_to_the_model"] == 0


def test_content_similarity_from_keywords():
    kw = similar._keyword_matrix(pa.array(["a,b", "b,c", "x", None]), 4)
    sims = similar.content_similarity(np.array(["d", "d", "c", "c"], object), kw, np.arange(4))
    assert sims[0, 1] == pytest.approx(0.5 + 0.5 / 3)
    assert sims[0, 2] == 0.0


def test_home_rails(con, promoted):
    reg, _ = promoted
    recs, _ = flows.recommendations(con, reg, n=30)
    similar_table, _ = flows.similar_titles(con, reg)
    wh.write_tables(con, {"recommendations": recs, "similar_titles": similar_table})
    wh.write_tables(con, {"home_rails": rails.home_rails(AS_OF)})
    r = con.sql("select * from ml.home_rails").to_arrow_table().to_pandas()
    assert {"continue_watching", "top_picks", "because_you_watched", "trending"} <= set(
        r["rail_type"]
    )
    assert not r.duplicated(["user_id", "title_id"]).any()
    assert r.groupby(["user_id", "rail_rank"])["item_rank"].max().max() <= 10
    firsts = r.groupby("user_id")["rail_rank"].min()
    assert (firsts == 1).all()
    byw = r[r["rail_type"] == "because_you_watched"]
    assert byw["anchor_title_id"].notna().all()
    # the rail says what the user did with its anchor: a like, else a valid play
    anchors = (
        con.sql("""
        select distinct r.user_id, r.anchor_title_id, r.rail_title,
            case when r.rail_title like 'Because you liked %'
                then 'Because you liked ' else 'Because you watched ' end
                || t.title_name as expected,
            case when r.rail_title like 'Because you liked %'
                then coalesce(i.is_liked, false)
                else exists (
                    select 1 from marts.plays p where p.user_id = r.user_id
                    and p.title_id = r.anchor_title_id and p.is_valid_play)
            end as true_claim
        from ml.home_rails r
        join marts.titles t on t.title_id = r.anchor_title_id
        left join marts.user_title_interests i
            on i.user_id = r.user_id and i.title_id = r.anchor_title_id
        where r.rail_type = 'because_you_watched'
    """)
        .to_arrow_table()
        .to_pandas()
    )
    assert len(anchors) > 0 and anchors["true_claim"].all()
    assert (anchors["rail_title"] == anchors["expected"]).all()
    assert anchors["rail_title"].str.startswith("Because you liked ").any()


def test_taste_clusters_describe_every_viewer(con, promoted):
    reg, _ = promoted
    clusters, members, info = flows.taste_clusters(con, reg)
    c, m = clusters.to_pandas(), members.to_pandas()
    assert info["k"] == len(c) >= 2
    assert c["user_count"].sum() == len(m)
    assert c["top_categories"].map(len).eq(3).all()
    assert c["top_title_ids"].map(len).gt(0).all()
    assert m["cluster_id"].isin(c["cluster_id"]).all()


def test_churn_risk_scores_active_subscribers(con, marts):
    _, facts = marts
    result = churn.churn_risk(con, AS_OF)
    s = result.scores.to_pandas()
    assert len(s) > 100 and s["churn_risk"].between(0, 1).all()
    assert not s["user_id"].isin(facts["deleted_users"]).any()
    assert set(s["risk_band"]) <= {"low", "medium", "high"}
    e = result.evaluation
    assert e["method"] == "logistic_regression"
    assert 0.5 < e["auc_model"] <= 1 and 0 <= e["auc_rule"] <= 1
    assert e["reliability"]


def test_registry_keeps_the_promoted_version_when_a_model_fails(tmp_path):
    from ml.registry import Registry

    reg = Registry(tmp_path / "models")
    model = fit(ModelSpec("popularity"), structured_matrix(users=20, items=40))
    users, titles = np.arange(20).astype(str), np.arange(40).astype(str)
    good = reg.save(model, users, titles, {"weights": {"name": "graded"}}, version="v1")
    reg.record(good, {"passed": True})
    bad = reg.save(model, users, titles, {"weights": {"name": "graded"}}, version="v2")
    reg.record(bad, {"passed": False})
    assert reg.promoted() == "v1"
    assert reg.versions() == ["v1", "v2"]
    meta = reg.metadata("v2")
    assert meta["model"]["kind"] == "popularity" and meta["weights"]["name"] == "graded"
    loaded = reg.load("v1")
    np.testing.assert_array_equal(loaded.model.popularity, model.popularity)
    history = (tmp_path / "models" / "promotions.jsonl").read_text().splitlines()
    assert len(history) == 2


def test_a_promoted_ease_model_serves_recommendations_and_similar_titles(
    con, marts, promoted, tmp_path
):
    """EASE promoted (in its own registry): recommendations with reasons, similar titles."""
    _, facts = marts
    table = con.sql("select * from ml.training_interactions").to_arrow_table()
    titles = np.asarray(ia.catalog(con)["title_id"].to_pylist(), dtype=object)
    data = ia.build(table, titles)
    reg = flows.registry(tmp_path)
    model = fit(ModelSpec("ease", {"l2": 100.0}), data.matrix)
    version = reg.save(model, data.user_ids, data.title_ids, {"weights": ia.GRADED.to_dict()})
    reg.record(version, {"passed": True})
    recs = flows.recommendations(con, reg, n=20)[0].to_pandas()
    model_recs = recs[recs["source"] == "model"]
    assert len(model_recs) > 0 and (model_recs["model_version"] == version).all()
    assert model_recs["reason_title_id"].notna().mean() > 0.9
    excluded = table.filter(table["is_excluded"]).to_pandas()
    assert recs.merge(excluded, on=["user_id", "title_id"]).empty
    assert not recs["title_id"].isin(facts["unavailable_titles"]).any()
    similar_table, info = flows.similar_titles(con, reg, n=10)
    s = similar_table.to_pandas()
    assert info["model_version"] == version and (s["collaborative_weight"] > 0).any()
    assert (s["title_id"] != s["similar_title_id"]).all()
