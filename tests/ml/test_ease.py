"""EASE^R (ml.models): the closed form, scoring, persistence, the memory cap, tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from ml import evaluation as ev
from ml import models, movielens, recommend
from ml.models import ModelSpec, TrainedModel, fit
from ml.registry import Registry

FIXTURE = Path(__file__).parent / "ml-100k-tiny"  # synthetic, ml-100k layout


def tiny() -> sp.csr_matrix:
    """8 users x 6 items; items 0 and 1 always go together, item 5 nobody touched."""
    x = np.array(
        [
            [1, 1, 0, 0, 1, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 0, 1, 1, 0],
            [1, 1, 1, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    return sp.csr_matrix(x)


def ridge_per_column(x: np.ndarray, l2: float) -> np.ndarray:
    """The constrained problem solved directly: min ||X - XB||^2 + l2 ||B||^2 with
    diag(B) = 0 separates into one ridge regression per column j, of X[:, j] on the
    other columns (b_jj fixed at 0)."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    return b


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return fit(ModelSpec("ease", {"l2": 2.0}), tiny())


def test_weights_solve_the_constrained_least_squares_problem(model):
    x = tiny().toarray().astype(np.float64)
    expected = ridge_per_column(x, 2.0)
    b = model.similarity.toarray()  # B, read by scores, reasons and similar titles
    np.testing.assert_allclose(b, expected, atol=1e-6)
    assert np.all(np.diag(b) == 0)
    assert np.all(b[5] == 0) and np.all(b[:, 5] == 0)  # item 5: no evidence
    # stored without its zeros: the diagonal and item 5's row and column
    assert model.similarity.nnz == np.count_nonzero(expected) <= 5 * 4
    np.testing.assert_array_equal(models.ease_weights(tiny(), 2.0), b)


def test_dense_to_csr_places_a_sub_matrix():
    dense = np.array([[0, 1.5, 0], [2, 0, 0], [0, -1, 3]], np.float32)
    csr = models.dense_to_csr(dense, np.array([1, 3, 4]), 6)
    expected = np.zeros((6, 6), np.float32)
    expected[np.ix_([1, 3, 4], [1, 3, 4])] = dense
    np.testing.assert_array_equal(csr.toarray(), expected)
    assert csr.nnz == 4 and csr.has_sorted_indices
    with pytest.raises(ValueError, match="increasing"):
        models.dense_to_csr(dense, np.array([3, 1, 4]), 6)


def test_the_float32_path_matches_the_float64_one(monkeypatch):
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((300, 80)) < 0.1).astype(np.float32))
    exact = models.ease_weights(x, 10.0)
    monkeypatch.setattr(models, "EASE_FLOAT64_ITEMS", 10)  # force float32, in place
    np.testing.assert_allclose(models.ease_weights(x, 10.0), exact, atol=2e-5)


def test_known_top_items_and_seen_items_filtered(model):
    history = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0]], np.float32))
    ids, scores = model.recommend(history, history, n=3)
    assert ids[0, 0] == 1  # item 1 always comes with item 0
    # the second user's ranking, from the directly solved weights
    direct = history[1].toarray()[0] @ ridge_per_column(tiny().toarray().astype(float), 2.0)
    direct[[3, 4]] = -np.inf
    shown = ids[1][ids[1] >= 0]
    np.testing.assert_array_equal(shown, np.argsort(-direct)[: len(shown)])
    assert not np.isin(ids[0], [0]).any() and not np.isin(ids[1], [3, 4]).any()
    assert (ids != 5).all()  # no evidence for it: never recommended
    assert np.all(np.diff(scores[0][ids[0] >= 0]) <= 0)
    blocked, _ = model.recommend(history, history, n=3, filter_items=np.array([1]))
    assert (blocked != 1).all()
    empty, _ = model.recommend(sp.csr_matrix((1, 6), dtype=np.float32), sp.csr_matrix((1, 6)), 3)
    assert (empty == models.NO_ITEM).all()  # no history, no evidence


def test_scores_of_a_new_history_are_history_times_b(model):
    """How the live re-ranker scores a session: scores() and fold_in() for EASE."""
    session = sp.csr_matrix(np.array([[0, 1, 0, 2, 0, 0]], np.float32))
    expected = session.toarray() @ ridge_per_column(tiny().toarray().astype(float), 2.0)
    np.testing.assert_allclose(model.scores(session), expected, atol=1e-6)
    np.testing.assert_allclose(model.fold_in(session), expected, atol=1e-6)
    negative = sp.csr_matrix(np.array([[0, 1, 0, -1, 0, 0]], np.float32))  # a dislike
    np.testing.assert_allclose(model.scores(negative), model.scores(negative.maximum(0)))
    with pytest.raises(ValueError, match="item columns"):
        model.scores(sp.csr_matrix((1, 4), dtype=np.float32))


@pytest.mark.parametrize("kind", ["als", "bm25", "ease", "popularity"])
def test_scores_rank_like_recommend_for_every_kind(kind):
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    params = {"als": {"factors": 8, "iterations": 5}, "bm25": {"K": 30}}.get(kind, {})
    m = fit(ModelSpec(kind, params), train)
    history = train[:5]
    ids, _ = m.recommend(history, history, n=4)
    assert (ids >= 0).sum(axis=1).min() > 0
    s = m.scores(history)
    s[history.toarray() != 0] = -np.inf
    for u in range(5):
        top = ids[u][ids[u] >= 0]
        assert np.allclose(s[u, top], np.sort(s[u])[::-1][: len(top)], rtol=1e-5)


def test_save_and_load_round_trip(tmp_path, model):
    reg = Registry(tmp_path / "models")
    users, titles = np.arange(8).astype(str), np.arange(6).astype(str)
    version = reg.save(model, users, titles, {"weights": {"name": "graded"}})
    with np.load(tmp_path / "models" / version / "model.npz", allow_pickle=False) as data:
        assert {"sim_data", "sim_indices", "sim_indptr", "popularity"} <= set(data.files)
    loaded = reg.load(version).model
    assert loaded.kind == "ease" and loaded.spec.params == {"l2": 2.0}
    np.testing.assert_array_equal(loaded.similarity.toarray(), model.similarity.toarray())
    history = tiny()
    a, sa = model.recommend(history, history, n=3)
    b, sb = loaded.recommend(history, history, n=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_the_reason_is_the_largest_term_of_the_score(model):
    history = tiny()
    ids, _ = model.recommend(history, history, n=2)
    reason, strength = recommend.explain(model, history, ids)
    u, slot = 3, 0
    hist = history[u].indices
    terms = history[u].data * model.similarity.toarray()[hist, ids[u, slot]]
    assert reason[u, slot] == hist[np.argmax(terms)]
    assert strength[u, slot] == pytest.approx(terms.max(), rel=1e-5)


def test_a_catalog_above_the_memory_cap_is_refused(monkeypatch):
    monkeypatch.setattr(models, "EASE_MAX_ITEMS", 5)
    with pytest.raises(ValueError, match=r"while fitting\); the cap is 5 titles"):
        fit(ModelSpec("ease"), tiny())  # 6 items
    with pytest.raises(ValueError, match="l2 > 0"):
        models.ease_weights(tiny()[:, :4], 0.0)


def test_the_tuning_grids_include_ease():
    config = ev.EvalConfig()
    assert [s.params["l2"] for s in config.ease] == list(ev.EASE_GRID["l2"])
    assert all(s.kind == "ease" for s in config.ease) and len(config.ease) >= 5
    assert len(movielens.EASE_AXES["l2"]) >= 5


def test_movielens_tunes_ease_on_validation_and_skips_it_above_the_cap(monkeypatch):
    als = [ModelSpec("als", {"factors": 8, "iterations": 5})]
    ease = [ModelSpec("ease", {"l2": 5.0}), ModelSpec("ease", {"l2": 50.0})]
    out = movielens.benchmark(FIXTURE, seed=1, tuning=als, alternatives=(), ease=ease)
    tuned = {t["model"]: t["ndcg_at_10"] for t in out["tuning"]}
    assert {s.label for s in ease} <= set(tuned)
    assert out["ease"]["model"] == max((s.label for s in ease), key=tuned.get)
    assert out["best"]["model"] == max(tuned, key=tuned.get)
    monkeypatch.setattr(models, "EASE_MAX_ITEMS", 10)  # the fixture has 60 items
    out = movielens.benchmark(FIXTURE, seed=1, tuning=als, alternatives=(), ease=ease)
    assert "ease" not in out and "EASE left out" in out["notes"][0]
    assert all(not t["model"].startswith("ease") for t in out["tuning"])


def test_dense_and_sparse_scoring_of_b_agree(monkeypatch):
    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((80, 40)) < 0.15).astype(np.float32))
    m = fit(ModelSpec("ease", {"l2": 5.0}), train)
    assert not sp.issparse(m._item_weights(train.nnz))  # many histories: a dense copy
    assert sp.issparse(m._item_weights(3))  # a session: the CSR
    dense_ids, dense_scores = m.recommend(train, train, n=5)
    monkeypatch.setattr(models, "DENSE_SCORING_BYTES", 0)  # score against the CSR
    assert sp.issparse(m._item_weights(train.nnz))
    sparse_ids, sparse_scores = m.recommend(train, train, n=5)
    np.testing.assert_allclose(sparse_scores, dense_scores, rtol=1e-5)
    np.testing.assert_array_equal(sparse_ids, dense_ids)
