"""The offline proof of the live recommendations: replay held-out events in time order.

    ottp session-benchmark [PATH] [--json] [--max-targets N] [--test-frac F] [--seed S]

PATH: a MovieLens ratings file (``ratings.csv`` / ``u.data``, or a folder holding
one) or a warehouse file; without it, the warehouse under ``OTTP_DATA_DIR`` (the
simulated demo data, ``ottp demo``). See :mod:`ottp.realtime.session_data`.

Protocol:

1. split by time: the last ``test_frac`` of the events (by time) are the test part,
   the ``test_frac`` before them the validation part;
2. validation: train on everything before it; pick the batch ALS among
   :data:`BATCH_GRID` by the batch list's HR@20, then the re-ranking weights by
   coordinate ascent on HR@20 (:func:`tune_weights`), on validation targets only;
3. test: retrain on everything before the test part (the chosen ALS), build the
   serving model from it (same builder as production) and replay the test events in
   order. A target is each valid play of a title other than the user's previous
   event's title; the list is what each method returns just before it, from what
   the live state would know: the session so far (same session key, before the
   target), and the titles played, completed or in progress since the split.
   The live method calls :meth:`LiveRecommender.recommend` (the endpoint's path);
4. metrics over targets: HR@10, HR@20 (target in the top 10/20), MRR@20 (1/rank,
   0 beyond 20), coverage@20 (distinct titles in all lists / titles).

Methods: ``popularity`` (training viewers per title), ``batch`` (the batch model's
top-N computed at training time: what ``ml.recommendations`` serves; popularity for
users it does not know), ``item_knn`` (the project's cosine item-kNN neighbours of
the session's latest title), ``vsknn`` (:mod:`~ottp.realtime.session_knn` alone) and
``live`` (the re-ranker). Every baseline drops the titles the batch history
excludes and those played since the split, and fills its list up to 20 with
popularity. At most ``max_targets`` targets are replayed per part: all the
targets of a deterministic random sample of users (seeded).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ml.models import ModelSpec, TrainedModel, fit
from ottp import config
from ottp.realtime.rerank import (
    Interaction,
    LiveRecommender,
    RerankWeights,
    ServingModel,
    SessionSignals,
)
from ottp.realtime.rerank_model import (
    TREND_HALF_LIFE_DAYS,
    batch_candidates,
    build_serving_model,
    transitions_from_plays,
    trending_scores,
)
from ottp.realtime.session_data import Dataset, load_movielens, load_warehouse
from ottp.realtime.session_knn import build_session_index

K_LIST = 20
METHODS = ("popularity", "batch", "item_knn", "vsknn", "live")
BATCH_GRID = (
    ModelSpec("als", {"factors": 64, "regularization": 5.0, "alpha": 2.0, "iterations": 15}),
    ModelSpec("als", {"factors": 64, "regularization": 50.0, "alpha": 8.0, "iterations": 15}),
    ModelSpec("als", {"factors": 64, "regularization": 1.0, "alpha": 4.0, "iterations": 15}),
)
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
TUNED = ("batch", "model", "transitions", "sknn", "next_episode", "continue_watching", "trending")
DEFAULT_MAX_TARGETS = 3000


# ---------------------------------------------------------------------- metrics


def metrics(lists: np.ndarray, targets: np.ndarray, n_titles: int) -> dict:
    """HR@10, HR@20, MRR@20 and coverage@20 of ranked lists (rows, -1 padded)."""
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        return {"hr_at_10": 0.0, "hr_at_20": 0.0, "mrr_at_20": 0.0, "coverage": 0.0, "targets": 0}
    lists = np.asarray(lists, dtype=np.int64).reshape(len(targets), -1)[:, :K_LIST]
    hit = lists == targets[:, None]
    found = hit.any(axis=1)
    rank = np.where(found, hit.argmax(axis=1) + 1, 0)
    recommended = np.unique(lists[lists >= 0])
    return {
        "hr_at_10": round(float(((rank >= 1) & (rank <= 10)).mean()), 4),
        "hr_at_20": round(float(found.mean()), 4),
        "mrr_at_20": round(float(np.where(found, 1.0 / np.maximum(rank, 1), 0.0).mean()), 4),
        "coverage": round(len(recommended) / max(n_titles, 1), 4),
        "targets": int(len(targets)),
    }


# ---------------------------------------------------------------------- targets


@dataclass
class Target:
    signals: SessionSignals
    user: str
    item: int
    session_items: np.ndarray  # the session's titles before the target, oldest first
    seen: np.ndarray  # titles played since the split


def targets(ds: Dataset, start: float, end: float, max_targets: int, seed: int) -> list[Target]:
    """The replay targets in [start, end) (a seeded sample of at most max_targets), each
    with what the live state knew just before it."""
    part = np.flatnonzero((ds.at >= start) & (ds.at < end))
    prev_item = np.r_[-1, ds.item[:-1]]
    prev_item[np.r_[True, ds.user[1:] != ds.user[:-1]]] = -1
    is_target = np.zeros(len(ds.item), dtype=bool)
    candidates = part[ds.valid[part] & (ds.item[part] != prev_item[part])]
    if len(candidates) > max_targets:
        rng = np.random.default_rng(seed)
        candidates = rng.choice(candidates, max_targets, replace=False)
    is_target[candidates] = True
    users = np.unique(ds.user[candidates])
    part = part[np.isin(ds.user[part], users)]
    bounds = np.flatnonzero(np.r_[True, ds.user[part][1:] != ds.user[part][:-1], True])
    out: list[Target] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        out.extend(_user_targets(ds, part[lo:hi], is_target))
    return out


def _user_targets(ds: Dataset, rows: np.ndarray, is_target: np.ndarray) -> list[Target]:
    """One user's targets: a walk over the user's events of the part (offline replay)."""
    out: list[Target] = []
    progress: dict[str, float] = {}
    completed: set[str] = set()
    liked: set[str] = set()
    disliked: set[str] = set()
    session: list[Interaction] = []
    session_items: list[int] = []
    seen: list[int] = []
    last_session = None
    for r in rows.tolist():
        title = str(ds.title_ids[ds.item[r]])
        if ds.session[r] != last_session:
            session, session_items, last_session = [], [], ds.session[r]
        if is_target[r]:
            signals = SessionSignals(
                user_id=str(ds.user[r]),
                interactions=tuple(session),
                current_title=session[-1].title_id if session else None,
                liked=frozenset(liked),
                disliked=frozenset(disliked),
                completed=frozenset(completed),
                progress=dict(progress),
            )
            out.append(
                Target(
                    signals,
                    str(ds.user[r]),
                    int(ds.item[r]),
                    np.array(session_items),
                    np.array(seen),
                )
            )
        stars = ds.stars[r]
        if np.isnan(stars):
            session.append(Interaction(title, "play", float(ds.at[r])))
        else:
            session.append(Interaction(title, "rating", float(ds.at[r]), float(stars)))
            (liked if stars >= 4 else disliked if stars <= 2 else set()).add(title)
        session_items.append(int(ds.item[r]))
        seen.append(int(ds.item[r]))
        progress[title] = max(progress.get(title, 0.0), float(ds.pct[r]))
        if ds.complete[r]:
            completed.add(title)
    return out


# ---------------------------------------------------------------------- models


@dataclass
class Trained:
    serving: ServingModel
    batch: TrainedModel
    knn: TrainedModel
    popularity_order: np.ndarray


def train(
    ds: Dataset, end_at: float, spec: ModelSpec, seed: int, batch_only: bool = False
) -> Trained:
    """The batch model and the serving model from every event before end_at
    (batch_only: without the model's similar titles, for comparing batch models)."""
    tm = ds.training(end_at)
    n = ds.n_titles
    batch = fit(spec, tm.matrix, seed=seed)
    knn = fit(ModelSpec("cosine", {"K": 100}), tm.matrix, seed=seed)
    past = ds.at < end_at
    valid = past & ds.valid
    index_from = -np.inf if ds.session_days is None else end_at - ds.session_days * 86400
    recent = valid & (ds.at >= index_from)
    serving = build_serving_model(
        f"benchmark-{spec.label}",
        batch,
        ds.title_ids,
        tm.user_ids,
        tm.matrix,
        batch_candidates(batch, tm.matrix, tm.exclude),
        transitions_from_plays(ds.user[valid], ds.item[valid], ds.at[valid], n, ds.session[valid]),
        build_session_index(ds.session[recent], ds.item[recent], ds.at[recent], n),
        trending_scores(ds.item[valid], ds.at[valid], end_at, n, TREND_HALF_LIFE_DAYS),
        exclude=tm.exclude,
        available=ds.available,
        next_episode=ds.next_episode,
        title_names=ds.title_names,
        similar=sp.csr_matrix((n, n), dtype=np.float32) if batch_only else None,
    )
    pop = batch.popularity.astype(np.float64)
    order = np.lexsort((np.arange(n), -pop))
    return Trained(serving, batch, knn, order[ds.available[order]])


# ---------------------------------------------------------------------- methods


def _blocked(tr: Trained, t: Target) -> np.ndarray:
    """What every baseline drops: unavailable, excluded by the batch history, played
    since the split."""
    s = tr.serving
    mask = ~s.available
    row = s.user_index.get(t.user, -1)
    if row >= 0:
        mask[s.exclude.indices[s.exclude.indptr[row] : s.exclude.indptr[row + 1]]] = True
    mask[t.seen.astype(np.int64)] = True
    return mask


def _ranked(items: np.ndarray, scores: np.ndarray, mask: np.ndarray, tr: Trained) -> np.ndarray:
    """Items by score (ties by index), without masked ones, then popularity, to K_LIST."""
    items = np.asarray(items, dtype=np.int64)
    order = np.lexsort((items, -np.asarray(scores, dtype=np.float64)))
    items = items[order]
    items = items[~mask[items]][:K_LIST]
    if len(items) < K_LIST:
        fill = tr.popularity_order[~mask[tr.popularity_order]]
        fill = fill[~np.isin(fill, items)][: K_LIST - len(items)]
        items = np.concatenate([items, fill])
    return np.pad(items, (0, K_LIST - len(items)), constant_values=-1)


def method_list(name: str, tr: Trained, rec: LiveRecommender, t: Target) -> np.ndarray:
    """The top-K_LIST title indices a method returns for a target."""
    s = tr.serving
    if name == "live":
        got = [s.title_index[i.title_id] for i in rec.recommend(t.signals, K_LIST)]
        return np.pad(np.asarray(got, np.int64), (0, K_LIST - len(got)), constant_values=-1)
    mask = _blocked(tr, t)
    empty = np.zeros(0, np.int64)
    if name == "popularity":
        return _ranked(empty, empty, mask, tr)
    if name == "batch":
        row = s.user_index.get(t.user, -1)
        if row < 0:
            return _ranked(empty, empty, mask, tr)
        lo, hi = s.candidates.indptr[row], s.candidates.indptr[row + 1]
        return _ranked(s.candidates.indices[lo:hi], s.candidates.data[lo:hi], mask, tr)
    if name == "item_knn":
        if len(t.session_items) == 0:
            return _ranked(empty, empty, mask, tr)
        sim = tr.knn.similarity
        last = int(t.session_items[-1])
        lo, hi = sim.indptr[last], sim.indptr[last + 1]
        return _ranked(sim.indices[lo:hi], sim.data[lo:hi], mask, tr)
    if name == "vsknn":
        w = rec.weights
        items, scores = s.sessions.scores(t.session_items, sample=w.sknn_sample, k=w.sknn_k)
        return _ranked(items, scores, mask, tr)
    raise ValueError(f"unknown method {name!r}; one of {METHODS}")


def evaluate(
    tr: Trained, rec: LiveRecommender, tgts: list[Target], methods=METHODS
) -> dict[str, dict]:
    truth = np.array([t.item for t in tgts], dtype=np.int64)
    out = {}
    for name in methods:
        started = time.perf_counter()
        lists = np.array([method_list(name, tr, rec, t) for t in tgts]).reshape(len(tgts), K_LIST)
        out[name] = metrics(lists, truth, tr.serving.n_titles)
        out[name]["seconds"] = round(time.perf_counter() - started, 2)
    return out


# ---------------------------------------------------------------------- tuning


def tune_weights(
    tr: Trained, tgts: list[Target], start: RerankWeights | None = None, passes: int = 2
) -> tuple[RerankWeights, dict]:
    """Coordinate ascent over WEIGHT_GRID per weight, on HR@20 then MRR@20.

    The candidates and their features do not depend on the weights: they are computed
    once per target (LiveRecommender.candidate_features), then re-weighted.
    """
    start = start or RerankWeights()
    rec = LiveRecommender(tr.serving, start)
    prepared = [rec.candidate_features(t.signals, K_LIST)[:2] for t in tgts]
    truth = np.array([t.item for t in tgts], dtype=np.int64)

    width = max((len(c) for c, _ in prepared), default=0)
    cands = np.full((len(tgts), width), np.iinfo(np.int64).max, dtype=np.int64)
    feats = np.zeros((len(tgts), width, len(TUNED)), dtype=np.float32)
    for n, (cand, f) in enumerate(prepared):
        cands[n, : len(cand)], feats[n, : len(cand)] = cand, f
    padding = cands == np.iinfo(np.int64).max

    def score(w: RerankWeights) -> dict:
        """recommend()'s ranking (score, then title index), for every target at once."""
        s = feats @ w.vector()
        s[padding] = -np.inf
        order = np.lexsort((cands, -s), axis=-1)[:, :K_LIST]
        lists = np.take_along_axis(cands, order, axis=1)
        lists[np.take_along_axis(padding, order, axis=1)] = -1
        return metrics(lists, truth, tr.serving.n_titles)

    best_w, best = start, score(start)
    for _ in range(passes):
        improved = False
        for name in TUNED:
            for value in WEIGHT_GRID:
                w = replace(best_w, **{name: value})
                m = score(w)
                if (m["hr_at_20"], m["mrr_at_20"]) > (best["hr_at_20"], best["mrr_at_20"]):
                    best_w, best, improved = w, m, True
        if not improved:
            break
    return best_w, best


# ---------------------------------------------------------------------- the run


def load(path: Path | None) -> Dataset:
    """MovieLens at path, a warehouse file at path, or the warehouse of OTTP_DATA_DIR."""
    if path is None:
        return load_warehouse(config.settings().warehouse_path)
    path = Path(path)
    if path.suffix == ".duckdb":
        return load_warehouse(path)
    return load_movielens(path)


def split_times(ds: Dataset, test_frac: float) -> tuple[float, float]:
    if not 0 < test_frac < 0.5:
        raise ValueError(f"test_frac must be between 0 and 0.5, got {test_frac}")
    if len(ds.at) < 10:
        raise ValueError(f"{ds.source}: {len(ds.at)} events; too few to split")
    t_val, t_test = np.quantile(ds.at, [1 - 2 * test_frac, 1 - test_frac])
    return float(t_val), float(t_test)


def run_benchmark(
    ds: Dataset,
    test_frac: float = 0.2,
    max_targets: int = DEFAULT_MAX_TARGETS,
    seed: int = 42,
    tune: bool = True,
    grid: tuple[ModelSpec, ...] = BATCH_GRID,
) -> dict:
    """Validation (pick the batch model, tune the weights), then the test replay."""
    started = time.perf_counter()
    t_val, t_test = split_times(ds, test_frac)
    val_targets = targets(ds, t_val, t_test, max_targets, seed)
    test_targets = targets(ds, t_test, np.inf, max_targets, seed)
    if not val_targets or not test_targets:
        raise ValueError(f"{ds.source}: no replay targets in the validation or the test part")
    weights, validation = RerankWeights(), {}
    spec = grid[0]
    if tune:
        per_spec = {}
        for candidate in grid:
            tr = train(ds, t_val, candidate, seed, batch_only=True)
            per_spec[candidate.label] = evaluate(
                tr, LiveRecommender(tr.serving), val_targets, ("batch",)
            )
            if (
                per_spec[candidate.label]["batch"]["hr_at_20"]
                > per_spec[spec.label]["batch"]["hr_at_20"]
            ):
                spec = candidate
        tr = train(ds, t_val, spec, seed)
        weights, live_val = tune_weights(tr, val_targets)
        validation = {
            "batch_hr_at_20_by_model": {k: v["batch"]["hr_at_20"] for k, v in per_spec.items()},
            "live_tuned": live_val,
            **evaluate(tr, LiveRecommender(tr.serving, weights), val_targets, ("batch", "vsknn")),
        }
    tr = train(ds, t_test, spec, seed)
    result = evaluate(tr, LiveRecommender(tr.serving, weights), test_targets)
    best = max(METHODS, key=lambda m: (result[m]["hr_at_20"], result[m]["mrr_at_20"]))
    return {
        **result,
        "best": best,
        "setup": {
            "dataset": ds.summary(),
            "test_frac": test_frac,
            "validation_from": _iso(t_val),
            "test_from": _iso(t_test),
            "validation_targets": len(val_targets),
            "test_targets": len(test_targets),
            "batch_model": spec.label,
            "weights": asdict(weights),
            "validation": validation,
            "seed": seed,
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def format_table(result: dict) -> str:
    s = result["setup"]
    d = s["dataset"]
    lines = [
        f"{d['name']} ({d['source']}): {d['events']:,} events, {d['users']:,} users, "
        f"{d['titles']:,} titles; test from {s['test_from']} ({s['test_targets']} targets), "
        f"validation from {s['validation_from']} ({s['validation_targets']} targets)",
        f"batch model: {s['batch_model']}; weights: "
        + ", ".join(f"{k}={v:g}" for k, v in s["weights"].items()),
        "",
        "| method | HR@10 | HR@20 | MRR@20 | coverage@20 |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in METHODS:
        r = result[m]
        mark = " **best**" if m == result["best"] else ""
        lines.append(
            f"| {m}{mark} | {r['hr_at_10']:.4f} | {r['hr_at_20']:.4f} | {r['mrr_at_20']:.4f} "
            f"| {r['coverage']:.4f} |"
        )
    gain = result["live"]["hr_at_20"] / max(result["batch"]["hr_at_20"], 1e-9) - 1
    lines.append(f"\nlive vs batch HR@20: {gain:+.1%}   ({s['seconds']} s)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        help="MovieLens ratings.csv / u.data (or their folder), or a warehouse .duckdb; "
        "default: the warehouse of OTTP_DATA_DIR (the simulated demo data)",
    )
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument("--test-frac", type=float, default=0.2)
    parser.add_argument("--max-targets", type=int, default=DEFAULT_MAX_TARGETS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-tune", action="store_true", help="Default weights and the first batch model."
    )


def run(args: argparse.Namespace) -> int:
    try:
        ds = load(Path(args.path) if args.path else None)
        result = run_benchmark(
            ds, args.test_frac, args.max_targets, args.seed, tune=not args.no_tune
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"session-benchmark: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
