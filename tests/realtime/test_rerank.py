"""The live re-ranker: reasons, filters, cold start, fold-in, serving model round trip."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from ml.models import ModelSpec, fit
from ml.registry import Registry
from ottp.realtime.rerank import (
    IMPRESSION_LIMIT,
    Interaction,
    LiveRecommender,
    RerankWeights,
    SessionSignals,
    load_serving_model,
    save_serving_model,
    write_serving_model,
)
from ottp.realtime.rerank_model import (
    batch_candidates,
    build_serving_model,
    top_per_row,
    transitions_from_plays,
    trending_scores,
)
from ottp.realtime.session_knn import build_session_index

N_TITLES = 12
TITLES = np.array([f"t{i:02d}" for i in range(N_TITLES)], dtype=object)
NAMES = np.array([f"Title {i}" for i in range(N_TITLES)], dtype=object)
USERS = np.array([f"u{i:02d}" for i in range(30)], dtype=object)
ONLY = {f: 0.0 for f in ("batch", "model", "transitions", "sknn", "next_episode")}
ONLY.update(continue_watching=0.0, trending=0.0)


def _world():
    """30 users in two taste groups (titles 0-5 and 6-11), each session a run of
    consecutive titles; t00 -> t01 -> t02 is a series; t11 unavailable."""
    rng = np.random.default_rng(7)
    users, items, at, session = [], [], [], []
    for u in range(30):
        base = 0 if u < 15 else 6
        for s in range(3):
            start = int(rng.integers(0, 4))
            for step in range(3):
                users.append(u)
                items.append(base + (start + step) % 6)
                at.append(1_000_000.0 + u * 10_000 + s * 3_000 + step * 600)
                session.append(u * 10 + s)
    users, items = np.array(users), np.array(items)
    at, session = np.array(at), np.array(session)
    history = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(30, N_TITLES))
    history.sum_duplicates()
    history.data[:] = 1.0
    return users, items, at, session, history


@pytest.fixture(scope="module")
def world():
    users, items, at, session, history = _world()
    als = fit(ModelSpec("als", {"factors": 8, "iterations": 10, "regularization": 0.1}), history)
    n = N_TITLES
    next_episode = np.full(n, -1)
    next_episode[0], next_episode[1] = 1, 2
    available = np.ones(n, bool)
    available[11] = False
    series = np.array(["Show S"] * 3 + [""] * (n - 3), dtype=object)
    trending = np.linspace(0.2, 1.0, n)[::-1].copy()  # t00 trends most
    model = build_serving_model(
        "v-test",
        als,
        TITLES,
        USERS,
        history,
        batch_candidates(als, history, history, n=6),
        transitions_from_plays(users, items, at, n, session),
        build_session_index(session, items, at, n),
        trending,
        available=available,
        next_episode=next_episode,
        title_names=NAMES,
        series_names=series,
    )
    return {"model": model, "als": als, "history": history}


def _rec(world, **weights) -> LiveRecommender:
    return LiveRecommender(world["model"], RerankWeights(**weights) if weights else None)


def _ids(items) -> list[str]:
    return [i.title_id for i in items]


# ---------------------------------------------------------------------- reasons


def test_next_episode_of_what_is_playing(world):
    # u20 watches the other group: the series is new to them
    signals = SessionSignals(
        user_id="u20", interactions=(Interaction("t00", "play"),), current_title="t00"
    )
    items = _rec(world).recommend(signals, 5)
    hit = [i for i in items if i.title_id == "t01"]
    assert hit and hit[0].reason_code == "next_episode"
    assert hit[0].reason_text == "Next episode after Title 0"
    assert "t00" not in _ids(items)  # what is playing is not recommended
    assert _rec(world, next_episode=10.0).recommend(signals, 1)[0].title_id == "t01"


def test_each_signal_gives_its_reason(world):
    signals = SessionSignals(
        user_id=None, interactions=(Interaction("t03", "play"),), current_title="t03"
    )
    viewers = _rec(world, **{**ONLY, "transitions": 1.0}).recommend(signals, 3)
    assert {i.reason_code for i in viewers} == {"viewers_next"}
    assert (
        viewers[0].reason_text
        == f"Viewers of Title 3 watch {NAMES[int(viewers[0].title_id[1:])]} next"
    )
    sknn = _rec(world, **{**ONLY, "sknn": 1.0}).recommend(signals, 3)
    assert sknn[0].reason_code == "watching_now"
    assert sknn[0].reason_text == "Because you're watching Title 3 now"
    # neighbours of a session around t03 hold titles of the same group
    assert all(int(i.title_id[1:]) < 6 for i in sknn)


def test_liked_reason_names_the_closest_liked_title(world):
    signals = SessionSignals(user_id="u20", liked={"t07"})
    items = _rec(world, **{**ONLY, "model": 1.0}).recommend(signals, 3)
    assert items and {i.reason_code for i in items} == {"liked"}
    assert items[0].reason_text == "Because you liked Title 7"
    plain = _rec(world, **{**ONLY, "batch": 1.0}).recommend(SessionSignals(user_id="u20"), 3)
    assert {i.reason_code for i in plain} == {"for_you"}


def test_continue_watching_beats_the_batch_exclusion(world):
    # u20 watched titles of the second group: excluded by the batch history...
    watched = world["model"].exclude[world["model"].user_index["u20"]].indices
    title = TITLES[watched[0]]
    plain = _rec(world).recommend(SessionSignals(user_id="u20"), N_TITLES)
    assert title not in _ids(plain)
    # ...unless it is in progress
    signals = SessionSignals(user_id="u20", progress={title: 0.4})
    items = _rec(world).recommend(signals, N_TITLES)
    hit = [i for i in items if i.title_id == title]
    assert hit and hit[0].reason_code == "continue"
    assert hit[0].reason_text == f"Continue watching {NAMES[watched[0]]}"


# ---------------------------------------------------------------------- filters


def test_filters_disliked_completed_unavailable_and_ignored_impressions(world):
    rec = _rec(world, trending=1.0)
    base = _ids(rec.recommend(SessionSignals(), N_TITLES))
    assert "t11" not in base  # unavailable
    assert len(base) == N_TITLES - 1
    signals = SessionSignals(
        disliked={"t00"},
        completed={"t01"},
        progress={"t02": 0.95},
        impressions={"t03": IMPRESSION_LIMIT, "t04": IMPRESSION_LIMIT - 1},
    )
    got = _ids(rec.recommend(signals, N_TITLES))
    assert set(base) - set(got) == {"t00", "t01", "t02", "t03"}
    assert "t04" in got  # shown fewer times than the limit


# ---------------------------------------------------------------------- cold start


def test_cold_start_is_trending(world):
    items = _rec(world).recommend(SessionSignals(user_id="never-seen"), 4)
    assert _ids(items) == ["t00", "t01", "t02", "t03"]
    assert {i.reason_code for i in items} == {"trending"}
    assert items[0].reason_text == "Trending now"
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)


def test_anonymous_device_gets_session_signals(world):
    signals = SessionSignals(interactions=(Interaction("t08", "play"),))
    items, info = _rec(world).recommend_with_info(signals, 5)
    assert not info.known_user
    assert {i.reason_code for i in items} - {"trending"}, "the session must count"
    # the session's group (titles 6-10) leads
    assert int(items[0].title_id[1:]) >= 6


# ---------------------------------------------------------------------- fold-in


def test_fold_in_matches_implicit_recalculate_user(world):
    from ottp.realtime.rerank import _factor_fold_in

    als, model = world["als"], world["model"]
    row = world["history"][4]
    implicit_model = als._implicit()
    expected = implicit_model.recalculate_user(0, sp.csr_matrix(row))
    got = _factor_fold_in(model, row.indices.astype(np.int64), row.data)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_fold_in_with_the_session_changes_the_list(world):
    rec = _rec(world, **{**ONLY, "model": 1.0})

    def group_rank(user, liked_titles) -> float:
        """Mean rank of the second group's titles (lower: ranked higher)."""
        session = tuple(Interaction(f"t{i:02d}", "like") for i in liked_titles)
        ids = _ids(rec.recommend(SessionSignals(user_id=user, interactions=session), N_TITLES))
        return float(np.mean([r for r, t in enumerate(ids) if int(t[1:]) >= 6]))

    # a new viewer: the session alone decides
    assert group_rank("new", (6, 7)) < group_rank("new", (0, 1))
    # a first-group viewer liking second-group titles this session: they move up
    assert group_rank("u02", (8, 9)) < group_rank("u02", ())


def test_a_play_changes_the_next_list(world):
    rec = _rec(world)
    first = SessionSignals(user_id="u05", interactions=(Interaction("t03", "play"),))
    second = replace(first, interactions=(*first.interactions, Interaction("t09", "play")))
    a, b = _ids(rec.recommend(first, 5)), _ids(rec.recommend(second, 5))
    assert a != b
    assert "t09" not in b  # playing now


# ---------------------------------------------------------------------- bad input


def test_bad_signals_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown interaction kind"):
        Interaction("t00", "teleport")
    with pytest.raises(ValueError, match="non-empty string"):
        Interaction("", "play")
    with pytest.raises(ValueError, match="between 0 and 1"):
        SessionSignals(progress={"t00": 1.5})


def test_unknown_titles_and_empty_sessions_are_reported_not_fatal(world):
    rec = _rec(world)
    with pytest.raises(ValueError, match="k must be at least 1"):
        rec.recommend(SessionSignals(), 0)
    with pytest.raises(TypeError):
        rec.recommend({"user_id": "u01"}, 5)
    signals = SessionSignals(
        user_id="u01",
        interactions=(Interaction("nope", "play"), Interaction("t02", "click")),
        liked={"gone"},
    )
    items, info = rec.recommend_with_info(signals, 5)
    assert info.unknown_titles == ["nope", "gone"]
    assert len(items) == 5
    assert len(rec.recommend(SessionSignals(interactions=()), 3)) == 3


# ---------------------------------------------------------------------- persistence


def test_top_per_row_keeps_the_strongest():
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.0, 0.2, 0.0, 0.9]], np.float32))
    top = top_per_row(m, 2).toarray()
    np.testing.assert_allclose(top, [[0, 0.5, 0.3, 0], [0, 0.2, 0, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(top_per_row(m, 1).toarray(), [[0, 0.5, 0, 0], [0, 0, 0, 0.9]])


def test_trending_decays_with_age():
    score = trending_scores(
        np.array([0, 0, 1]), np.array([0.0, 0.0, 86400.0 * 7]), 86400.0 * 7, 3, 7.0
    )
    np.testing.assert_allclose(score, [1.0, 1.0, 0.0])


def test_save_and_load_round_trip(world, tmp_path):
    model = world["model"]
    info = save_serving_model(model, tmp_path / "serving")
    assert info["version"] == "v-test"
    assert info["rows"]["titles"] == N_TITLES and info["rows"]["users"] == 30
    loaded = load_serving_model(tmp_path / "serving")
    assert loaded.version == "v-test" and loaded.spec == model.spec
    for name in ("history", "exclude", "candidates", "transitions"):
        assert (getattr(loaded, name) != getattr(model, name)).nnz == 0
    np.testing.assert_array_equal(loaded.model.item_factors, model.model.item_factors)
    signals = SessionSignals(user_id="u07", interactions=(Interaction("t04", "play"),))
    assert LiveRecommender(loaded).recommend(signals, 6) == LiveRecommender(model).recommend(
        signals, 6
    )
    with pytest.raises(FileNotFoundError, match="serving model"):
        load_serving_model(tmp_path / "missing")


def _warehouse(world) -> duckdb.DuckDBPyConnection:
    users, items, at, session, _ = _world()
    con = duckdb.connect()
    for schema in ("marts", "ml"):
        con.sql(f"create schema {schema}")
    titles = pa.table(
        {
            "title_id": pa.array(list(TITLES) + ["t12"]),
            "title_name": pa.array(list(NAMES) + ["New"]),
            "series_id": pa.array(["s1"] * 3 + [None] * 10),
            "next_episode_title_id": pa.array(["t01", "t02"] + [None] * 11),
            "is_available": pa.array([True] * 11 + [False, True]),
        }
    )
    plays = pa.table(
        {
            "session_id": pa.array(session.astype(str)),
            "title_id": pa.array(TITLES[items].astype(str)),
            "started_at": pa.array((at * 1e6).astype("int64"), pa.timestamp("us")),
            "is_valid_play": pa.array(np.ones(len(items), bool)),
        }
    )
    h = world["history"].tocoo()
    history = pa.table(
        {
            "user_id": pa.array(USERS[h.row].astype(str)),
            "title_id": pa.array(TITLES[h.col].astype(str)),
            "value": pa.array(h.data),
            "is_excluded": pa.array(np.ones(h.nnz, bool)),
        }
    )
    recs = pa.table(
        {
            "user_id": ["u20", "u20", "u99"],
            "title_id": ["t05", "t12", "t03"],
            "rank": [1, 2, 1],
            "source": ["model", "model", "model"],
        }
    )
    transitions = pa.table(
        {"from_title_id": ["t03"], "to_title_id": ["t04"], "confidence": [0.7], "next_rank": [1]}
    )
    for name, table in {
        "marts.titles": titles,
        "marts.plays": plays,
        "ml.training_interactions": history,
        "ml.recommendations": recs,
        "marts.title_transitions": transitions,
    }.items():
        con.register("t", table)
        con.sql(f"create table {name} as select * from t")
        con.unregister("t")
    return con


def test_write_serving_model_from_the_warehouse_and_registry(world, tmp_path):
    con = _warehouse(world)
    reg = Registry(tmp_path / "models")
    with pytest.raises(ValueError, match="no promoted model"):
        write_serving_model(con, reg, tmp_path / "out")
    version = reg.save(world["als"], USERS, TITLES, {})
    reg.record(version, {"passed": True})
    info = write_serving_model(con, tmp_path / "models", tmp_path / "out")
    assert info["version"] == version
    assert info["files"] == ["serving_model.npz", "serving_model.json"]
    rows = info["rows"]
    assert rows["titles"] == N_TITLES + 1  # the model's titles, then the catalog's new one
    assert rows["candidates"] == 2  # u99 is not a batch user
    assert rows["transitions"] == 1 and rows["next_episodes"] == 2
    model = load_serving_model(tmp_path / "out")
    assert model.version == version
    assert model.title_ids[-1] == "t12" and model.available[-1]
    assert model.model.item_factors.shape[0] == N_TITLES + 1
    signals = SessionSignals(user_id="u20", interactions=(Interaction("t03", "play"),))
    assert "t12" in _ids(LiveRecommender(model).recommend(signals, 5))  # a batch candidate
    only = RerankWeights(**{**ONLY, "transitions": 1.0})
    items = LiveRecommender(model, only).recommend(signals, 1)
    assert items[0].title_id == "t04"
    assert items[0].reason_text == "Viewers of Title 3 watch Title 4 next"


@pytest.mark.parametrize("kind", ["ease", "bm25", "bpr", "popularity"])
def test_every_model_kind_serves_and_folds_the_session_in(world, kind):
    params = {"ease": {"l2": 10.0}, "bpr": {"factors": 8, "iterations": 20}}.get(kind, {})
    batch = fit(ModelSpec(kind, params), world["history"])
    base = world["model"]
    model = build_serving_model(
        "v-kind",
        batch,
        TITLES,
        USERS,
        world["history"],
        batch_candidates(batch, world["history"], world["history"], n=6),
        base.transitions,
        base.sessions,
        base.trending,
        available=base.available,
    )
    rec = LiveRecommender(model, RerankWeights(**{**ONLY, "model": 1.0, "trending": 0.01}))
    liked = SessionSignals(user_id="new", liked={"t06", "t07"}, interactions=())
    items = rec.recommend(liked, 4)
    assert len(items) == 4
    if kind != "popularity":  # the session's group leads, named by a liked title
        assert all(int(i.title_id[1:]) >= 6 for i in items[:2])
        assert items[0].reason_code == "liked"


def test_latency_script_runs_on_small_arrays(capsys):
    from ottp.realtime import rerank_latency

    args = ["--titles", "300", "--users", "200", "--sessions", "400", "--calls", "60"]
    assert rerank_latency.main(args) == 0
    out = capsys.readouterr().out
    assert all(f"{kind}" in out for kind in ("known", "anonymous", "cold"))
    assert "median" in out and "p99" in out
