"""Offline evaluation on the platform data: time-based splits, tuning, baselines.

Protocol (docs/recommendations.md):

- test split: train on everything before ``as_of - test_days``, hold out the last
  ``test_days``; relevant = titles watched past the abandonment point and not
  disliked in the held-out days, that the user had not watched before;
- validation split: the same, carved from the training period only (the
  ``validation_days`` before the test split); tuning never sees the test days;
- users = those with training history and at least one relevant held-out title.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ml import interactions as ia
from ml import metrics
from ml.models import ModelSpec, TrainedModel, ease_size_problem, fit
from ml.warehouse import scalar

ALS_GRID = {
    "factors": (64, 128),
    "regularization": (1.0, 5.0),
    "alpha": (1.0, 4.0),
    "iterations": (10, 20),
}
# EASE^R's regularization, on a log scale (6 closed-form fits, one matrix inversion each)
EASE_GRID = {"l2": (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)}


def grid(kind: str, axes: dict[str, Sequence]) -> list[ModelSpec]:
    keys = list(axes)
    return [
        ModelSpec(kind, dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(axes[k] for k in keys))
    ]


@dataclass(frozen=True)
class EvalConfig:
    k: int = 10
    test_days: int = 14
    validation_days: int = 14
    weights: ia.Weights = ia.GRADED
    tuning: tuple[ModelSpec, ...] = tuple(grid("als", ALS_GRID))
    alternatives: tuple[ModelSpec, ...] = (ModelSpec("bpr"), ModelSpec("bm25"))
    ease: tuple[ModelSpec, ...] = tuple(grid("ease", EASE_GRID))
    variants: tuple[ia.Weights, ...] = (
        ia.POSITIVE_ONLY,
        ia.ABANDON_NEGATIVE,
        ia.DISLIKE_DROPPED,
        ia.NO_DECAY,
        ia.PLAYS_ONLY,
    )
    seed: int = 42


@dataclass
class Split:
    name: str
    train: ia.Interactions
    relevant: sp.csr_matrix
    train_end: datetime
    heldout_end: datetime

    @property
    def users(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.relevant.indptr) > 0)


def time_split(
    con: duckdb.DuckDBPyConnection,
    name: str,
    train_end: datetime,
    heldout_end: datetime,
    title_ids: np.ndarray,
    weights: ia.Weights = ia.GRADED,
) -> Split:
    train = ia.build(ia.interactions(con, train_end, weights=weights), title_ids)
    held = ia.heldout(con, train_end, heldout_end, weights.abandon_pct)
    return Split(name, train, ia.relevance(held, train), train_end, heldout_end)


@dataclass
class Result:
    """One model evaluated on one split."""

    split: str
    spec: ModelSpec
    weights: str
    role: str
    summary: dict
    per_user: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    users: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    fit_seconds: float = 0.0
    user_ids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, object))

    def metric(self, name: str) -> float:
        return float(self.summary.get(name, float("nan")))


def evaluate(
    model: TrainedModel,
    train: ia.Interactions,
    relevant: sp.csr_matrix,
    k: int = 10,
    filter_items: np.ndarray | None = None,
    n_catalog: int | None = None,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Recommend k titles to every user with held-out titles and score them."""
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    ids, _ = model.recommend(
        train.matrix[users], train.exclude[users], n=k, rows=users, filter_items=filter_items
    )
    per = metrics.per_user(ids, relevant[users], k)
    summary = metrics.summarize(per, k)
    n_catalog = n_catalog or train.matrix.shape[1]
    summary[f"coverage_at_{k}"] = metrics.coverage(ids, n_catalog, k)
    return summary, per, users


def run(
    split: Split,
    spec: ModelSpec,
    role: str,
    k: int,
    filter_items: np.ndarray | None,
    n_catalog: int,
    seed: int,
    weights: str,
) -> Result:
    model = fit(spec, split.train.matrix, seed=seed)
    summary, per, users = evaluate(model, split.train, split.relevant, k, filter_items, n_catalog)
    return Result(
        split.name,
        spec,
        weights,
        role,
        summary,
        per,
        users,
        model.fit_seconds,
        split.train.user_ids[users],
    )


@dataclass
class Report:
    """Everything one evaluation produced; `rows()` is the ml.model_evaluation table."""

    evaluated_at: datetime
    as_of: datetime
    k: int
    weights: ia.Weights
    candidate: ModelSpec
    results: list[Result]
    segments: dict[str, dict[str, dict]]  # model label -> segment -> summary
    windows: dict[str, tuple[datetime, datetime]]  # split -> (train end, held-out end)
    notes: list[str] = field(default_factory=list)

    def find(self, split: str, role: str, label: str | None = None) -> Result | None:
        for r in self.results:
            if r.split == split and r.role == role and (label is None or r.spec.label == label):
                return r
        return None

    def test(self, role: str) -> Result | None:
        return self.find("test", role)

    def rows(self) -> pa.Table:
        k = self.k
        cols: dict[str, list] = {
            name: []
            for name in (
                "evaluated_at",
                "as_of",
                "split",
                "role",
                "model",
                "model_kind",
                "params",
                "weights",
                "segment",
                "users",
                f"precision_at_{k}",
                f"recall_at_{k}",
                f"ndcg_at_{k}",
                f"map_at_{k}",
                f"coverage_at_{k}",
                "fit_seconds",
                "train_end",
                "heldout_end",
            )
        }

        def add(r: Result, segment: str, s: dict) -> None:
            cols["evaluated_at"].append(self.evaluated_at)
            cols["as_of"].append(self.as_of)
            cols["split"].append(r.split)
            cols["role"].append(r.role)
            cols["model"].append(r.spec.label)
            cols["model_kind"].append(r.spec.kind)
            cols["params"].append(json.dumps(dict(r.spec.params), sort_keys=True))
            cols["weights"].append(r.weights)
            cols["segment"].append(segment)
            cols["users"].append(int(s.get("users", 0)))
            for m in ("precision", "recall", "ndcg", "map", "coverage"):
                v = s.get(f"{m}_at_{k}")
                cols[f"{m}_at_{k}"].append(None if v is None or v != v else float(v))
            cols["fit_seconds"].append(float(r.fit_seconds))
            train_end, heldout_end = self.windows.get(r.split, (None, None))
            cols["train_end"].append(train_end)
            cols["heldout_end"].append(heldout_end)

        for r in self.results:
            add(r, "all", r.summary)
            if r.split == "test":
                for segment, s in self.segments.get(r.spec.label + "|" + r.role, {}).items():
                    add(r, segment, s)
        return pa.table(cols)

    def window_text(self) -> dict[str, str]:
        return {
            split: f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M}"
            for split, (a, b) in self.windows.items()
        }

    def markdown(self) -> str:
        """The test-split comparison as a markdown table (asset metadata)."""
        k = self.k
        lines = [
            f"| model | role | weights | P@{k} | R@{k} | NDCG@{k} | MAP@{k} | coverage | users |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            if r.split != "test":
                continue
            s = r.summary
            lines.append(
                f"| {r.spec.label} | {r.role} | {r.weights} | {s[f'precision_at_{k}']:.4f} "
                f"| {s[f'recall_at_{k}']:.4f} | {s[f'ndcg_at_{k}']:.4f} | {s[f'map_at_{k}']:.4f} "
                f"| {s.get(f'coverage_at_{k}', 0):.3f} | {s['users']} |"
            )
        return "\n".join(lines)


def segment_breakdown(
    result: Result, segment_of: tuple[np.ndarray, np.ndarray], k: int
) -> dict[str, dict]:
    """Metrics per fan segment; segment_of: (sorted user ids, their segments)."""
    seg_ids, seg_labels = segment_of
    pos = ia.lookup(seg_ids, result.user_ids)
    labels = np.where(pos >= 0, seg_labels[np.maximum(pos, 0)], "unknown")
    out = {}
    for label in np.unique(labels):
        mask = labels == label
        out[str(label)] = metrics.summarize(result.per_user, k, mask)
    return out


def fan_segments(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    t = con.sql(
        "select user_id, highest_segment from marts.user_segments order by user_id"
    ).to_arrow_table()
    return (
        np.asarray(t["user_id"].to_numpy(zero_copy_only=False), dtype=object),
        np.asarray(t["highest_segment"].to_numpy(zero_copy_only=False), dtype=object),
    )


def windows(
    con: duckdb.DuckDBPyConnection, as_of: datetime, test_days: float, validation_days: float
) -> tuple[datetime, datetime, list[str]]:
    """The test and validation cut-offs, scaled down when they would take more than
    half of the history (the rest trains the validation model)."""
    first = scalar(con, "select min(started_at) from marts.plays") or as_of
    span = max((as_of - first).total_seconds() / 86400.0, 0.0)
    notes = []
    held = test_days + validation_days
    if held > span / 2.0:
        scale = span / 2.0 / held if held else 0.0
        test_days, validation_days = test_days * scale, validation_days * scale
        notes.append(
            f"history of {span:.1f} days: held-out windows shortened to "
            f"{test_days:.1f} (test) and {validation_days:.1f} (validation) days"
        )
    test_start = as_of - timedelta(days=test_days)
    validation_start = test_start - timedelta(days=validation_days)
    return test_start, validation_start, notes


def unavailable(catalog: pa.Table) -> np.ndarray:
    avail = np.asarray(catalog["is_available"].to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(~avail).astype(np.int32)


def _best(results: Iterable[Result], k: int) -> Result:
    return max(results, key=lambda r: np.nan_to_num(r.metric(f"ndcg_at_{k}"), nan=-1.0))


def _tune(
    go: Callable[[str, ModelSpec, str], Result],
    config: EvalConfig,
    n_titles: int,
    notes: list[str],
) -> tuple[ModelSpec, ModelSpec, ModelSpec | None]:
    """Every candidate on the validation split; returns the best overall, the best
    ALS and the best EASE (None when EASE was not tuned)."""
    k = config.k
    tuned = [go("validation", spec, "tuning") for spec in config.tuning]
    alternatives = [go("validation", spec, "tuning") for spec in config.alternatives]
    eased: list[Result] = []
    problem = ease_size_problem(n_titles)
    if config.ease and problem:
        notes.append(f"EASE not tuned: {problem}")
    else:
        eased = [go("validation", spec, "tuning") for spec in config.ease]
    go("validation", ModelSpec("popularity"), "tuning")
    best_als = _best(tuned, k).spec if tuned else ModelSpec("als")
    best_ease = _best(eased, k).spec if eased else None
    everything = tuned + alternatives + eased
    best = _best(everything, k).spec if everything else best_als
    return best, best_als, best_ease


def evaluate_platform(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    config: EvalConfig | None = None,
    champion: tuple[ModelSpec, str] | None = None,
    evaluated_at: datetime | None = None,
) -> Report:
    """Tune on the validation split, compare on the test split, break down by segment.

    The candidate is the model (ALS grid, an alternative or EASE grid) with the
    best validation NDCG. champion: the promoted model's spec and weights variant,
    re-fitted on the test split's training data, so the gate compares like with like.
    """
    config = config or EvalConfig()
    k = config.k
    catalog = ia.catalog(con)
    title_ids = np.asarray(catalog["title_id"].to_numpy(zero_copy_only=False), dtype=object)
    if np.any(title_ids[1:] < title_ids[:-1]):
        order = np.argsort(title_ids)
        catalog, title_ids = catalog.take(pa.array(order)), title_ids[order]
    blocked = unavailable(catalog)
    n_catalog = len(title_ids) - len(blocked)
    test_start, validation_start, notes = windows(
        con, as_of, config.test_days, config.validation_days
    )
    w = config.weights
    splits: dict[tuple[str, str], Split] = {}
    bounds = {"validation": (validation_start, test_start), "test": (test_start, as_of)}

    def split(name: str, weights: ia.Weights) -> Split:
        if (name, weights.name) not in splits:
            splits[name, weights.name] = time_split(con, name, *bounds[name], title_ids, weights)
        return splits[name, weights.name]

    results: list[Result] = []

    def go(name: str, spec: ModelSpec, role: str, weights: ia.Weights = w) -> Result:
        r = run(split(name, weights), spec, role, k, blocked, n_catalog, config.seed, weights.name)
        results.append(r)
        return r

    # tuning: the ALS grid, the alternatives and the EASE grid, on the validation split only
    best, best_als, best_ease = ModelSpec("als"), ModelSpec("als"), None
    if len(split("validation", w).users) == 0:
        notes.append("no validation users: default parameters kept, no tuning")
    else:
        best, best_als, best_ease = _tune(go, config, len(title_ids), notes)
        for variant in config.variants:
            go("validation", best_als, "weights_variant", variant)

    # test: the candidate against the baseline, the alternatives and the champion
    if len(split("test", w).users) == 0:
        notes.append("no test users: the test split is empty")
    segment_of = fan_segments(con)
    segments: dict[str, dict[str, dict]] = {}
    plan = [(best, "candidate"), (ModelSpec("popularity"), "baseline")]
    plan += [(s, "alternative") for s in config.alternatives if s.label != best.label]
    for tuned_best in (best_als, best_ease):
        if tuned_best is not None and tuned_best.label != best.label:
            plan.append((tuned_best, "alternative"))
    for spec, role in plan:
        r = go("test", spec, role)
        segments[f"{spec.label}|{role}"] = segment_breakdown(r, segment_of, k)
    go("test", best_als, "weights_variant", w)
    for variant in config.variants:
        go("test", best_als, "weights_variant", variant)
    if champion is not None:
        spec, weights_name = champion
        problem = ease_size_problem(len(title_ids)) if spec.kind == "ease" else None
        if problem:
            notes.append(f"champion {spec.label} not re-fitted: {problem}")
        else:
            go("test", spec, "champion", ia.VARIANTS.get(weights_name, w))

    return Report(
        evaluated_at=evaluated_at or datetime.now(),
        as_of=as_of,
        k=k,
        weights=w,
        candidate=best,
        results=results,
        segments=segments,
        windows={"validation": (validation_start, test_start), "test": (test_start, as_of)},
        notes=notes,
    )


def paired_difference(a: Result, b: Result, metric: str = "ndcg") -> tuple[float, float, int]:
    """Mean per-user difference a - b over the users both scored, and its standard error.

    The held-out users and titles do not depend on the weights variant or the model,
    so the comparison is paired user by user.
    """
    common, ia_, ib_ = np.intersect1d(
        a.user_ids.astype(str), b.user_ids.astype(str), return_indices=True
    )
    if len(common) < 2:
        return float("nan"), float("nan"), len(common)
    d = a.per_user[metric][ia_] - b.per_user[metric][ib_]
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return float("nan"), float("nan"), len(d)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d)


def bar_chart(rows: list[tuple[str, float]], width: int = 30) -> str:
    """A small text bar chart (asset metadata renders markdown, not images)."""
    if not rows:
        return ""
    top = max((v for _, v in rows if v == v), default=0.0) or 1.0
    label_w = max(len(label) for label, _ in rows)
    lines = []
    for label, v in rows:
        n = 0 if v != v else int(round(width * v / top))
        lines.append(f"{label:<{label_w}}  {'█' * n}{' ' * (width - n)}  {v:.4f}")
    return "```\n" + "\n".join(lines) + "\n```"
