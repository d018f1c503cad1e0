"""Recommender at scale: ALS training and top-N for every user, time and peak memory.

    python benchmarks/bench_ml.py [--users 100000] [--titles 20000] [--interactions 5000000]
                                  [--factors 64] [--iterations 15] [--n 50] [--json FILE]
                                  [--model als|ease] [--l2 500]

Builds a synthetic signed interaction matrix with a realistic skew (title
popularity ~ Zipf(0.8), user activity ~ log-normal, ~8% negatives as dislikes), then,
in a fresh child process (so its peak resident memory is the pipeline's alone):
fits ALS (or EASE^R with --model ease) with the production code (ml.models.fit),
folds every user in again (as serving a promoted model does; for EASE, scores every
user's history), computes the top-N of every user in batches without the titles they
interacted with, and explains the top 10 of every user. The targets are ALS's; EASE's
fit inverts a dense titles x titles matrix (time ~ titles^3), so measure it with a
smaller --titles.
Targets: training < 60 s, top-N for every user < 30 s, peak RSS < 4 GiB.
Wall and CPU seconds are both printed: on a shared machine, wall time depends on
what else runs (the load average before and after is printed too).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic(users: int, titles: int, interactions: int, seed: int = 0):
    """A user x title matrix with about `interactions` distinct pairs (vectorised)."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    item_cdf = np.cumsum(1.0 / np.arange(1, titles + 1) ** 0.8)
    item_cdf /= item_cdf[-1]
    user_cdf = np.cumsum(rng.lognormal(0.0, 1.0, users))
    user_cdf /= user_cdf[-1]
    rows = np.zeros(0, np.int64)
    cols = np.zeros(0, np.int64)
    while True:  # draw, drop repeated pairs, top up: a few rounds, not a loop per row
        missing = interactions - len(rows)
        if missing <= 0:
            break
        extra = int(missing * 1.15) + 1000
        rows = np.r_[rows, np.searchsorted(user_cdf, rng.random(extra))]
        cols = np.r_[cols, np.searchsorted(item_cdf, rng.random(extra))]
        key = np.unique(rows * titles + cols)
        rows, cols = key // titles, key % titles
    pick = np.sort(rng.choice(len(rows), interactions, replace=False))
    repeats = 1 + rng.poisson(0.3, interactions)
    m = sp.csr_matrix((repeats.astype(np.float32), (rows[pick], cols[pick])), shape=(users, titles))
    # graded values: repeat views add confidence, some pairs are dislikes
    m.data = (1.0 + np.log(m.data)).astype(np.float32)
    negative = rng.random(m.nnz) < 0.08
    m.data[negative] = -1.0
    return m


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Phase:
    """Wall and CPU seconds of a block; CPU shows the work when other processes
    share the cores (wall then depends on how busy the machine is)."""

    def __init__(self, result: dict, name: str):
        self.result, self.name = result, name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()

    def __exit__(self, *exc):
        self.result[f"{self.name}_s"] = time.perf_counter() - self.wall
        self.result[f"{self.name}_cpu_s"] = _cpu() - self.cpu


def _pipeline(args: argparse.Namespace, out) -> None:
    import numpy as np

    from ml.models import ModelSpec, fit
    from ml.recommend import explain

    result: dict = {}
    with _Phase(result, "build"):
        train = synthetic(args.users, args.titles, args.interactions, args.seed)
    result["nnz"] = int(train.nnz)
    result["rss_after_build_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.model == "ease":
        spec = ModelSpec("ease", {"l2": args.l2})
    else:
        spec = ModelSpec(
            "als",
            {
                "factors": args.factors,
                "regularization": 5.0,
                "alpha": 1.0,
                "iterations": args.iterations,
            },
        )
    with _Phase(result, "fit"):
        model = fit(spec, train, seed=args.seed)

    users = np.arange(train.shape[0])
    with _Phase(result, "top_n"):
        ids, scores = model.recommend(train, train, n=args.n, rows=users)

    with _Phase(result, "fold_in"):
        if args.model == "ease":  # every history's scores, in blocks (dense rows)
            for start in range(0, train.shape[0], 2000):
                model.fold_in(train[start : start + 2000])
        else:
            model.fold_in(train)

    with _Phase(result, "explain_top10"):
        positives = train.copy()
        positives.data[positives.data < 0] = 0
        positives.eliminate_zeros()
        explain(model, positives, ids[:, :10])

    # no recommended title was in the user's row (watched, disliked ...)
    sample = np.random.default_rng(1).choice(len(users), 2000, replace=False)
    seen = {(u, i) for u in sample for i in train[u].indices}
    result["excluded_titles_recommended"] = sum(
        (u, i) in seen for u in sample for i in ids[u] if i >= 0
    )
    result["users_with_full_lists"] = float(np.mean((ids >= 0).all(axis=1)))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--titles", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--n", type=int, default=50, help="Titles per user (default 50).")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="Also write the results here.")
    parser.add_argument("--model", choices=("als", "ease"), default="als")
    parser.add_argument("--l2", type=float, default=500.0, help="EASE's l2 (default 500).")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_pipeline, args=(args, queue))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc.start()
    result = queue.get()
    proc.join()
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    result["config"] = vars(args)
    targets = {
        "fit_s": ("training", 60.0),
        "top_n_s": (f"top-{args.n} for every user", 30.0),
        "peak_rss_mib": ("peak memory (MiB)", 4096.0),
    }
    print(
        f"{args.users:,} users x {args.titles:,} titles, {result['nnz']:,} interactions "
        f"(built in {result['build_s']:.1f} s), "
        + (
            f"EASE l2 {args.l2:g}"
            if args.model == "ease"
            else f"ALS {args.factors} factors x {args.iterations} iterations"
        )
        + f", on {result['machine']}; load average "
        f"{result['load_average'][0]} before, {result['load_average'][1]} after"
    )
    print(f"  {'':<32} {'wall s':>10} {'CPU s':>8}")
    for key, (label, limit) in targets.items():
        ok = "ok" if result[key] < limit else "OVER"
        cpu = result.get(key[:-2] + "_cpu_s") if key.endswith("_s") else None
        cpu_text = f"{cpu:>8.1f}" if cpu is not None else " " * 8
        print(f"  {label:<32} {result[key]:>10.1f} {cpu_text}   (target < {limit:g})  {ok}")
    for key, label in (
        ("fold_in", "scores of every user" if args.model == "ease" else "fold-in of every user"),
        ("explain_top10", "reasons for every top 10"),
    ):
        print(f"  {label:<32} {result[key + '_s']:>10.1f} {result[key + '_cpu_s']:>8.1f}")
    print(
        f"  excluded titles recommended (2,000 users checked): "
        f"{result['excluded_titles_recommended']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if all(result[k] < lim for k, (_, lim) in targets.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
