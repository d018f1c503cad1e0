"""The session benchmark: metrics by hand, the replay's targets, the CLI, bad input."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from ml.models import ModelSpec
from ottp import cli
from ottp.realtime.session_benchmark import (
    K_LIST,
    METHODS,
    load,
    metrics,
    run_benchmark,
    targets,
)
from ottp.realtime.session_data import load_movielens, load_warehouse

SMALL_ALS = (ModelSpec("als", {"factors": 8, "iterations": 5, "regularization": 1.0}),)


def _write_ratings(path, rows) -> None:
    lines = ["userId,movieId,rating,timestamp"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def _chains(n_users: int = 60, seed: int = 3) -> list[tuple]:
    """Users watch 'chains' of titles in order (movie c*10 + 0, 1, ... 9), one chain a
    session, sessions a day apart; each user follows two of eight chains."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        t0 = 1_000_000 + int(rng.integers(0, 40)) * 86_400
        for s, chain in enumerate(rng.choice(8, 2, replace=False)):
            start = int(rng.integers(0, 3))
            for step in range(start, 10):
                stars = 5 if step % 3 else 3
                rows.append((u, int(chain) * 10 + step, stars, t0 + s * 86_400 + step * 120))
    return rows


@pytest.fixture(scope="module")
def chains_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ml") / "ratings.csv"
    _write_ratings(path, _chains())
    return path


@pytest.fixture(scope="module")
def chains_result(chains_file):
    return run_benchmark(load(chains_file), max_targets=300, seed=1, grid=SMALL_ALS)


def test_metrics_by_hand():
    lists = np.full((3, K_LIST), -1)
    lists[0, :2] = [5, 3]  # target 3 at rank 2
    lists[1] = [i for i in range(21) if i != 7][:15] + [7, 20, 21, 22, 23]  # rank 16
    lists[2, :2] = [1, 2]  # a miss
    got = metrics(lists, np.array([3, 7, 9]), n_titles=48)
    assert got["hr_at_10"] == round(1 / 3, 4)
    assert got["hr_at_20"] == round(2 / 3, 4)
    assert got["mrr_at_20"] == round((1 / 2 + 1 / 16) / 3, 4)
    assert got["coverage"] == round(20 / 48, 4)  # titles 0-15 and 20-23 recommended
    assert got["targets"] == 3
    assert metrics(np.zeros((0, K_LIST)), np.zeros(0), 10)["hr_at_20"] == 0.0


def test_targets_see_only_the_past_of_their_session(tmp_path):
    path = tmp_path / "ratings.csv"
    # user 1: a session of 10, 11, 11 (same title again: no target), 12; then 13 later;
    # user 2 rates 12 then 10; ties in time go by movie id
    _write_ratings(
        path,
        [
            (1, 10, 4, 0),
            (1, 11, 5, 60),
            (1, 11, 2, 90),
            (1, 12, 3, 120),
            (1, 13, 1, 9000),
            (2, 12, 5, 50),
            (2, 10, 5, 50),
        ],
    )
    ds = load_movielens(path)
    got = targets(ds, 0, np.inf, 100, seed=0)
    by_user = {}
    for t in got:
        by_user.setdefault(t.user, []).append(t)
    assert [ds.title_ids[t.item] for t in by_user["1"]] == ["10", "11", "12", "13"]
    assert [ds.title_ids[t.item] for t in by_user["2"]] == ["10", "12"]
    t12 = by_user["1"][2]
    assert [i.title_id for i in t12.signals.interactions] == ["10", "11", "11"]
    assert t12.signals.current_title == "11"
    assert t12.signals.liked == {"10", "11"} and t12.signals.disliked == {"11"}
    t13 = by_user["1"][3]  # a new session: nothing of it yet, but the live state remembers
    assert t13.signals.interactions == () and t13.signals.current_title is None
    assert t13.signals.completed == {"10", "11", "12"}
    assert sorted(ds.title_ids[t13.seen]) == ["10", "11", "11", "12"]
    assert len(targets(ds, 0, np.inf, 2, seed=0)) == 2


def test_the_live_path_follows_the_session(chains_result):
    r = chains_result
    for m in METHODS:
        assert set(r[m]) >= {"hr_at_10", "hr_at_20", "mrr_at_20", "coverage"}
        assert 0.0 <= r[m]["hr_at_10"] <= r[m]["hr_at_20"] <= 1.0
    # chains are sequential: session signals must beat the session-blind lists
    assert r["live"]["hr_at_20"] > r["popularity"]["hr_at_20"]
    assert r["live"]["hr_at_20"] > r["batch"]["hr_at_20"]
    assert r["vsknn"]["hr_at_20"] > r["popularity"]["hr_at_20"]
    assert r["best"] in METHODS
    setup = r["setup"]
    assert setup["validation_from"] < setup["test_from"]
    assert set(setup["weights"]) >= {"batch", "transitions", "sknn"}
    assert setup["validation"]["live_tuned"]["targets"] == setup["validation_targets"]


def test_cli_json(chains_file, capsys):
    rc = cli.main(
        ["session-benchmark", str(chains_file), "--json", "--no-tune", "--max-targets", "100"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"] in METHODS
    for m in METHODS:
        assert {"hr_at_10", "hr_at_20", "mrr_at_20", "coverage"} <= set(out[m])
    assert out["setup"]["test_targets"] == 100


def test_u_data_layout_reads_the_same(tmp_path, chains_file):
    rows = _chains(n_users=5)
    (tmp_path / "u.data").write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    _write_ratings(tmp_path / "ratings.csv", rows)
    a, b = load_movielens(tmp_path / "u.data"), load_movielens(tmp_path / "ratings.csv")
    assert np.array_equal(a.item, b.item) and np.array_equal(a.at, b.at)
    assert load_movielens(tmp_path).source.endswith("ratings.csv")  # a folder: ratings.csv first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("userId,movieId,rating,timestamp\n1,2,4.0,100\n1,x,3.0,200\n", "malformed rows"),
        ("user,item\n1,2\n", "columns"),
        ("userId,movieId,rating,timestamp\n", "no ratings"),
        ("", "not a ratings file"),
    ],
)
def test_malformed_files_get_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_movielens(path)
    assert cli.main(["session-benchmark", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_get_a_clear_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="no ratings.csv"):
        load_movielens(tmp_path)
    monkeypatch.setenv("OTTP_DATA_DIR", str(tmp_path / "nothing"))
    assert cli.main(["session-benchmark"]) == 2
    assert "ottp demo" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(ValueError, match="marts.plays"):
        load_warehouse(empty)
    not_duckdb = tmp_path / "text.duckdb"
    not_duckdb.write_text("not a database")
    with pytest.raises(ValueError, match="cannot open the warehouse"):
        load_warehouse(not_duckdb)
    few = tmp_path / "few.csv"
    _write_ratings(few, [(1, 1, 4, 1), (1, 2, 4, 2)])
    with pytest.raises(ValueError, match="too few"):
        run_benchmark(load(few))
