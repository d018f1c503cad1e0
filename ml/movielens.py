"""MovieLens benchmark: the same models and metrics on real ratings.

    ottp movielens-benchmark DIR [--test-frac 0.25] [--seed 42] [--k 10] [--json]

DIR holds ``ratings.csv`` + ``movies.csv`` (ml-latest-small, ml-25m) or
``u.data`` + ``u.item`` (ml-100k). Protocol (Microsoft Recommenders' comparison
table): per-user stratified random split, every held-out rating is relevant,
items seen in training are never recommended, k = 10. Every tuned model is
chosen on a validation split carved from the training part only: "als_tuned" (the
ALS grid), "ease" (the EASE^R grid; left out above ml.models.EASE_MAX_ITEMS items)
and "best" (the best of every candidate, BPR and BM25 included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml import metrics
from ml.evaluation import grid
from ml.models import ModelSpec, TrainedModel, ease_size_problem, fit

# The search space on MovieLens (ratings, not plays: denser, so other optima).
GRID_AXES = {
    "factors": (64, 128),
    "regularization": (5.0, 20.0, 50.0),
    "alpha": (0.5, 2.0, 8.0),
    "iterations": (15,),
}
ALTERNATIVES = (
    ModelSpec(
        "bpr", {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 200}
    ),
    ModelSpec("bm25", {"K": 200, "K1": 1.2, "B": 0.75}),
)
EASE_AXES = {"l2": (30.0, 100.0, 300.0, 1000.0, 3000.0)}
# Untuned ALS: implicit's documented defaults, except a fixed seed.
DEFAULT_ALS = ModelSpec(
    "als", {"factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15}
)


@dataclass
class Ratings:
    users: np.ndarray  # row index per rating
    items: np.ndarray  # column index per rating
    ratings: np.ndarray
    n_users: int
    n_items: int
    layout: str
    catalog_items: int | None = None  # movies.csv / u.item rows, when present


def load(folder: Path) -> Ratings:
    """Read either MovieLens layout; ids become dense indices (vectorised)."""
    folder = Path(folder)
    if (folder / "ratings.csv").exists():
        df = pd.read_csv(
            folder / "ratings.csv",
            dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float32},
            usecols=["userId", "movieId", "rating"],
        ).rename(columns={"userId": "user", "movieId": "item"})
        layout = "ratings.csv"
    elif (folder / "u.data").exists():
        df = pd.read_csv(
            folder / "u.data",
            sep="\t",
            header=None,
            names=["user", "item", "rating", "ts"],
            dtype={"user": np.int64, "item": np.int64, "rating": np.float32, "ts": np.int64},
        )
        layout = "u.data"
    else:
        raise FileNotFoundError(
            f"{folder}: no ratings.csv (ml-latest-small, ml-25m) or u.data (ml-100k)"
        )
    catalog_items = None
    if layout == "ratings.csv" and (folder / "movies.csv").exists():
        catalog_items = len(pd.read_csv(folder / "movies.csv", usecols=["movieId"]))
    elif layout == "u.data" and (folder / "u.item").exists():
        catalog_items = len(
            pd.read_csv(folder / "u.item", sep="|", header=None, usecols=[0], encoding="latin-1")
        )
    users, u_idx = np.unique(df["user"].to_numpy(), return_inverse=True)
    items, i_idx = np.unique(df["item"].to_numpy(), return_inverse=True)
    return Ratings(
        users=u_idx.astype(np.int64),
        items=i_idx.astype(np.int64),
        ratings=df["rating"].to_numpy(np.float32),
        n_users=len(users),
        n_items=len(items),
        layout=layout,
        catalog_items=catalog_items,
    )


def stratified_split(users: np.ndarray, test_frac: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of held-out rows: test_frac of each user's ratings, at random.

    Like Recommenders' python_stratified_split: each user keeps round((1 - f) * n)
    ratings in training (vectorised: random keys, rank within the user).
    """
    n = len(users)
    order = np.lexsort((rng.random(n), users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    keep = np.round((1.0 - test_frac) * counts).astype(np.int64)
    held = np.empty(n, dtype=bool)
    held[order] = rank >= np.repeat(keep, counts)
    return held


def _matrix(r: Ratings, mask: np.ndarray) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(int(mask.sum()), dtype=np.float32), (r.users[mask], r.items[mask])),
        shape=(r.n_users, r.n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def score(model: TrainedModel, train: sp.csr_matrix, test: sp.csr_matrix, k: int) -> dict:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(train[users], train[users], n=k, rows=users)
    out = metrics.ranking_metrics(ids, test[users], k)
    out[f"coverage_at_{k}"] = metrics.coverage(ids, train.shape[1], k)
    return out


def _row(spec: ModelSpec, model: TrainedModel, summary: dict, k: int) -> dict:
    keys = [f"{m}_at_{k}" for m in ("precision", "recall", "ndcg", "map")]
    return {
        "model": spec.label,
        **{key: round(float(summary[key]), 4) for key in keys},
        f"coverage_at_{k}": round(float(summary[f"coverage_at_{k}"]), 4),
        "users": int(summary["users"]),
        "fit_seconds": round(model.fit_seconds, 3),
    }


def _splits(
    r: Ratings, test_frac: float, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Train and test, then validation train and test carved from train only."""
    rng = np.random.default_rng(seed)
    held = stratified_split(r.users, test_frac, rng)
    train, test = _matrix(r, ~held), _matrix(r, held)
    tr_rows = np.flatnonzero(~held)
    val_held = stratified_split(r.users[tr_rows], test_frac, rng)
    sub = Ratings(
        r.users[tr_rows], r.items[tr_rows], r.ratings[tr_rows], r.n_users, r.n_items, r.layout
    )
    return train, test, _matrix(sub, ~val_held), _matrix(sub, val_held)


def _validate(
    candidates: list[ModelSpec],
    val_train: sp.csr_matrix,
    val_test: sp.csr_matrix,
    k: int,
    seed: int,
    progress=None,
) -> list[dict]:
    """Every candidate fitted on the validation training part and scored on its held-out part."""
    tuned = []
    for spec in candidates:
        m = fit(spec, val_train, seed=seed)
        s = score(m, val_train, val_test, k)
        tuned.append(
            {
                "model": spec.label,
                f"ndcg_at_{k}": round(s[f"ndcg_at_{k}"], 4),
                "fit_seconds": round(m.fit_seconds, 3),
            }
        )
        if progress:
            progress(f"validation {spec.label}: ndcg@{k} = {s[f'ndcg_at_{k}']:.4f}")
    return tuned


def benchmark(
    folder: Path,
    test_frac: float = 0.25,
    seed: int = 42,
    k: int = 10,
    tuning: list[ModelSpec] | None = None,
    alternatives: tuple[ModelSpec, ...] = ALTERNATIVES,
    progress=None,
    ease: list[ModelSpec] | None = None,
) -> dict:
    """Popularity, untuned ALS and the tuned models on one split of one data set.

    tuning: the ALS grid (default GRID_AXES); ease: the EASE grid (default EASE_AXES),
    left out with a note when the data has more items than EASE's cap.
    """
    started = time.perf_counter()
    r = load(folder)
    train, test, val_train, val_test = _splits(r, test_frac, seed)
    als_grid = list(tuning) if tuning is not None else grid("als", GRID_AXES)
    ease_grid = list(ease) if ease is not None else grid("ease", EASE_AXES)
    notes = []
    problem = ease_size_problem(r.n_items)
    if ease_grid and problem:
        notes.append(f"EASE left out: {problem}")
        ease_grid = []
    candidates = als_grid + list(alternatives) + ease_grid
    if not candidates:
        raise ValueError("nothing to tune: give at least one ALS, alternative or EASE model")
    tuned = _validate(candidates, val_train, val_test, k, seed, progress)
    ndcg = {t["model"]: t[f"ndcg_at_{k}"] for t in tuned}

    def pick(specs: list[ModelSpec]) -> ModelSpec:
        return specs[int(np.argmax([ndcg[s.label] for s in specs]))]

    out = {
        "dataset": str(folder),
        "layout": r.layout,
        "users": r.n_users,
        "items": r.n_items,
        "ratings": int(len(r.users)),
        "catalog_items": r.catalog_items,
        "protocol": {
            "split": "per-user stratified random",
            "test_frac": test_frac,
            "seed": seed,
            "k": k,
            "relevant": "every held-out rating",
            "excluded": "items seen in training",
            "tuning": "validation split carved from the training part only",
        },
    }
    plan = [("popularity", ModelSpec("popularity")), ("als", DEFAULT_ALS)]
    plan += [("als_tuned", pick(als_grid))] if als_grid else []
    plan += [("ease", pick(ease_grid))] if ease_grid else []
    plan.append(("best", pick(candidates)))
    scored: dict[str, dict] = {}  # the same model is fitted once
    for name, spec in plan:
        if spec.label not in scored:
            model = fit(spec, train, seed=seed)
            scored[spec.label] = _row(spec, model, score(model, train, test, k), k)
            if progress:
                progress(f"test {spec.label}: ndcg@{k} = {scored[spec.label][f'ndcg_at_{k}']}")
        out[name] = scored[spec.label]
    pop = out["popularity"][f"ndcg_at_{k}"]
    out["best_vs_popularity_ndcg"] = (
        round(out["best"][f"ndcg_at_{k}"] / pop - 1.0, 4) if pop else None
    )
    out["tuning"] = tuned
    out["notes"] = notes
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        metavar="DIR",
        type=Path,
        help="MovieLens folder: ratings.csv + movies.csv, or u.data + u.item.",
    )
    parser.add_argument(
        "--test-frac",
        type=float,
        default=0.25,
        help="Share of each user's ratings held out (default 0.25).",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")


ROWS = ("popularity", "als", "als_tuned", "ease", "best")


def format_table(result: dict, k: int) -> str:
    cols = [f"{m}_at_{k}" for m in ("precision", "recall", "ndcg", "map")]
    names = [name for name in ROWS if name in result]
    w = max(len(result[name]["model"]) for name in names) + 2
    lines = [
        f"{result['dataset']} ({result['layout']}): {result['users']:,} users, "
        f"{result['items']:,} items, {result['ratings']:,} ratings",
        f"{'':<11}{'model':<{w}}" + "".join(f"{c:>16}" for c in cols) + f"{'fit s':>9}",
    ]
    for name in names:
        row = result[name]
        lines.append(
            f"{name:<11}{row['model']:<{w}}"
            + "".join(f"{row[c]:>16.4f}" for c in cols)
            + f"{row['fit_seconds']:>9.2f}"
        )
    lift = result.get("best_vs_popularity_ndcg")
    if lift is not None:
        lines.append(f"best vs popularity, NDCG@{k}: {lift:+.1%}   ({result['seconds']:.1f} s)")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="movielens-benchmark", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if not Path(args.folder).is_dir():
        print(f"{args.folder}: not a folder", file=sys.stderr)
        return 2
    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        result = benchmark(args.folder, args.test_frac, args.seed, args.k, progress=progress)
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result, args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
