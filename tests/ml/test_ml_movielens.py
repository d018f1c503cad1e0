"""The MovieLens benchmark: both folder layouts, the protocol, and the real-data target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml import movielens
from ml.models import ModelSpec

FIXTURE = Path(__file__).parent / "ml-100k-tiny"  # synthetic, ml-100k layout
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-small"
KEYS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "fit_seconds")


def test_stratified_split_holds_out_the_share_of_every_user():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), rng.integers(4, 40, 50))
    held = movielens.stratified_split(users, 0.25, rng)
    per_user = np.bincount(users[held], minlength=50) / np.bincount(users, minlength=50)
    assert np.allclose(per_user, 0.25, atol=0.13)
    assert 0.22 < held.mean() < 0.28


def test_the_ml_100k_layout_loads():
    r = movielens.load(FIXTURE)
    assert r.layout == "u.data" and r.n_users == 40 and r.n_items == 60
    assert r.catalog_items == 60
    assert len(r.users) == len(r.items) == len(r.ratings)


def test_the_cli_runs_on_the_ml_100k_layout(capsys):
    from ottp import cli

    assert cli.main(["movielens-benchmark", str(FIXTURE), "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for name in ("popularity", "als", "best"):
        assert set(KEYS) <= set(out[name])
    assert out["protocol"]["split"] == "per-user stratified random"
    # the tuned models were picked on validation: every candidate was scored there
    tuned = {t["model"] for t in out["tuning"]}
    assert tuned >= {out["best"]["model"], out["als_tuned"]["model"], out["ease"]["model"]}
    assert {f"ease(l2={v:g})" for v in movielens.EASE_AXES["l2"]} <= tuned


def test_a_folder_without_ratings_is_refused(tmp_path, capsys):
    assert movielens.main([str(tmp_path)]) == 2
    assert "no ratings.csv" in capsys.readouterr().err


@pytest.mark.skipif(
    not (REAL / "ratings.csv").exists(),
    reason=f"MovieLens ml-latest-small not found at {REAL} (it is not shipped with the "
    "repository; put ratings.csv and movies.csv there to run this test)",
)
def test_tuned_als_beats_popularity_by_70_percent_on_ml_latest_small():
    grid = [
        ModelSpec("als", {"factors": 64, "regularization": 20.0, "alpha": 2.0, "iterations": 15}),
        ModelSpec("als", {"factors": 64, "regularization": 50.0, "alpha": 8.0, "iterations": 15}),
    ]
    out = movielens.benchmark(REAL, tuning=grid, alternatives=(), ease=[])
    assert out["users"] == 610 and out["ratings"] > 100_000
    pop, best = out["popularity"]["ndcg_at_10"], out["best"]["ndcg_at_10"]
    assert best >= 1.7 * pop, out
    assert out["best"]["precision_at_10"] > out["popularity"]["precision_at_10"]
