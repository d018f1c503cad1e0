"""Live recommendations that follow the viewer's session: candidates, re-ranking, reasons.

:class:`LiveRecommender` answers one request from a :class:`SessionSignals` (what the
live state knows of the actor: the session's ordered interactions, the current
title, likes, dislikes, completions, progress, impressions without a click) and a
:class:`~ottp.realtime.rerank_model.ServingModel` (numpy arrays from the batch side):

1. candidates: the batch model's top-N for the user, transitions from the session's
   latest titles ("viewers of X watch Y next"), V-SKNN over recent sessions, the next
   episode of what is playing, titles in progress (continue watching), trending
   titles, and the model's own: the titles most similar to the session's latest
   and liked titles (factor models; precomputed neighbours), or the strongest titles
   of the folded-in neighbour rows (item-item models);
2. features per candidate, each scaled to [0, 1] over the candidates: the batch rank
   score, the model score folded in with the session (ALS: the exact least-squares
   fold-in implicit's ``recalculate_user`` computes, over the user's batch history
   plus the session's interactions; item-item models: the weighted sum of the
   history's neighbour rows; BPR: the mean of the positive titles' factors), the
   transition confidence, the V-SKNN score, next episode, continue watching,
   trending;
3. the score is the weighted sum (:class:`RerankWeights`, tuned on the benchmark's
   validation part); the reason: continue watching or next episode when the title
   is one, else the feature contributing most to the score;
4. filters: disliked, completed and unavailable titles, the title playing now, titles
   the batch history excludes (watched, completed, disliked) unless in progress, and
   titles shown :data:`IMPRESSION_LIMIT` times or more this session without a click.

Per request work is proportional to the candidates (a few hundred titles), the
user's history and the sampled neighbour sessions; nothing loops over every title
(a per-request boolean mask over the titles is the only array of that size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

import numpy as np

from ottp.realtime.rerank_model import (
    ServingModel,
    build_serving_model,
    load_serving_model,
    save_serving_model,
    write_serving_model,
)
from ottp.realtime.session_knn import ranges

__all__ = [
    "IMPRESSION_LIMIT",
    "INTERACTION_KINDS",
    "REASONS",
    "Interaction",
    "LiveRecommender",
    "RecommendedItem",
    "RerankWeights",
    "ServingModel",
    "SessionSignals",
    "build_serving_model",
    "load_serving_model",
    "save_serving_model",
    "write_serving_model",
]

# A title shown this many times in the session without a click is not shown again.
IMPRESSION_LIMIT = 3
# progress (share watched) from which a title counts as started, and as complete
CONTINUE_MIN_PCT = 0.05
COMPLETE_PCT = 0.9
INTERACTION_KINDS = (
    "browse",
    "impression",
    "click",
    "play",
    "like",
    "dislike",
    "rating",
    "complete",
    "watchlist",
)
# The session's interactions as fold-in values (like the training values, no decay)
KIND_VALUE = {"click": 0.3, "play": 1.0, "like": 2.0, "complete": 2.0, "watchlist": 0.3}
# Kinds that put a title in the session sequence (transitions, V-SKNN)
SEQUENCE_KINDS = frozenset({"click", "play", "like", "complete", "rating"})
TRANSITION_DECAY = (1.0, 0.5, 0.25)  # the latest session titles' transitions
FOLD_IN_CANDIDATES = 100  # item-item models: the fold-in's strongest titles
MODEL_SEEDS = 5  # factor models: similar titles of the session's latest titles
TRENDING_CANDIDATES = 50

REASONS = {
    "watching_now": "Because you're watching {x} now",
    "viewers_next": "Viewers of {x} watch {y} next",
    "next_episode": "Next episode after {x}",
    "liked": "Because you liked {x}",
    "continue": "Continue watching {y}",
    "for_you": "Recommended for you",
    "trending": "Trending now",
}
FEATURES = ("batch", "model", "transitions", "sknn", "next_episode", "continue", "trending")


@dataclass(frozen=True)
class Interaction:
    title_id: str
    kind: str
    at: datetime | float | None = None
    value: float | None = None  # the stars of a rating

    def __post_init__(self) -> None:
        if self.kind not in INTERACTION_KINDS:
            raise ValueError(f"unknown interaction kind {self.kind!r}; one of {INTERACTION_KINDS}")
        if not isinstance(self.title_id, str) or not self.title_id:
            raise ValueError(f"interaction title_id must be a non-empty string: {self.title_id!r}")


def _frozen_map(m: Mapping | None) -> Mapping:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class SessionSignals:
    """What the live state knows of one actor for one request.

    interactions: this session's, oldest first. progress: share watched (0..1) per
    title. impressions: times shown this session without a click, per title.
    """

    user_id: str | None = None
    interactions: tuple[Interaction, ...] = ()
    current_title: str | None = None
    liked: frozenset[str] = frozenset()
    disliked: frozenset[str] = frozenset()
    completed: frozenset[str] = frozenset()
    progress: Mapping[str, float] = field(default_factory=dict)
    impressions: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        items = tuple(
            i if isinstance(i, Interaction) else Interaction(*i) for i in self.interactions
        )
        object.__setattr__(self, "interactions", items)
        for name in ("liked", "disliked", "completed"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        object.__setattr__(self, "progress", _frozen_map(self.progress))
        object.__setattr__(self, "impressions", _frozen_map(self.impressions))
        bad = [t for t, p in self.progress.items() if not 0.0 <= float(p) <= 1.0]
        if bad:
            raise ValueError(f"progress must be a share between 0 and 1: {bad[:3]}")

    @property
    def sequence(self) -> tuple[str, ...]:
        """Titles the viewer engaged with this session, oldest first."""
        return tuple(i.title_id for i in self.interactions if i.kind in SEQUENCE_KINDS)

    @property
    def now(self) -> str | None:
        seq = self.sequence
        return self.current_title or (seq[-1] if seq else None)


@dataclass(frozen=True)
class RecommendedItem:
    title_id: str
    score: float
    reason_code: str
    reason_text: str


@dataclass(frozen=True)
class RerankWeights:
    """Weight of each [0, 1] feature in the live score."""

    batch: float = 1.0
    model: float = 1.0
    transitions: float = 1.0
    sknn: float = 1.0
    next_episode: float = 2.0
    continue_watching: float = 0.5
    trending: float = 0.1
    sknn_sample: int = 500
    sknn_k: int = 100

    def vector(self) -> np.ndarray:
        return np.array(
            [
                self.batch,
                self.model,
                self.transitions,
                self.sknn,
                self.next_episode,
                self.continue_watching,
                self.trending,
            ],
            dtype=np.float32,
        )


@dataclass
class RequestInfo:
    """What a request used: unknown titles it ignored, the candidates it scored."""

    unknown_titles: list[str]
    candidates: int
    filtered: int
    known_user: bool


@dataclass
class _Request:
    """One request's signals as title indices."""

    user_row: int
    sequence: np.ndarray  # session titles, oldest first
    values: dict[int, float]  # fold-in values of the session's titles
    now: int
    liked: np.ndarray
    blocked: np.ndarray  # bool per title
    in_progress: np.ndarray
    unknown: list[str]


class LiveRecommender:
    """Re-ranks the batch candidates with the session's signals (see the module doc)."""

    def __init__(self, model: ServingModel, weights: RerankWeights | None = None) -> None:
        self.model = model
        self.weights = weights or RerankWeights()
        self._w = self.weights.vector()
        # per title, as Python lists: the id and the name a reason shows (read per item)
        self._ids = [str(t) for t in model.title_ids]
        self._names = [model.name(i) for i in range(model.n_titles)]

    # ------------------------------------------------------------------ public

    def recommend(self, signals: SessionSignals, k: int = 20) -> list[RecommendedItem]:
        return self.recommend_with_info(signals, k)[0]

    def recommend_with_info(
        self, signals: SessionSignals, k: int = 20
    ) -> tuple[list[RecommendedItem], RequestInfo]:
        cand, feats, scorer, n_filtered = self.candidate_features(signals, k)
        req = scorer.req
        contrib = feats * self._w[None, :]
        score = contrib.sum(axis=1)
        top = np.lexsort((cand, -score))[: int(k)]
        titles = cand[top]
        liked = self._closest_liked(titles, req.liked)
        items = [
            self._item(i, s, feature, scorer, closest)
            for i, s, feature, closest in zip(
                titles.tolist(),
                score[top].tolist(),
                _reason_features(contrib[top]),
                liked.tolist(),
                strict=True,
            )
        ]
        info = RequestInfo(req.unknown, int(len(cand) + n_filtered), n_filtered, req.user_row >= 0)
        return items, info

    def candidate_features(
        self, signals: SessionSignals, k: int = 20
    ) -> tuple[np.ndarray, np.ndarray, _Scorer, int]:
        """The allowed candidates (title indices) and their [0, 1] features (columns in
        FEATURES order), before weighting; recommend() ranks them by features @ weights.
        Also returns the scorer and how many candidates the filters removed."""
        if not isinstance(signals, SessionSignals):
            raise TypeError("signals must be a SessionSignals")
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        req = self._parse(signals)
        scorer = _Scorer(self, req, int(k))
        cand, feats = scorer.features()
        keep = ~req.blocked[cand]
        return cand[keep], feats[keep], scorer, int((~keep).sum())

    # ------------------------------------------------------------------ reasons

    def _item(
        self, i: int, score: float, feature: str, scorer: _Scorer, liked: int
    ) -> RecommendedItem:
        """Title ``i`` with its score and the reason its ``feature`` gives."""
        names, req = self._names, scorer.req
        if feature in ("batch", "model"):
            code, x = ("liked", names[liked]) if liked >= 0 else ("for_you", "")
        elif feature == "transitions":
            code, x = "viewers_next", names[scorer.transition_from.get(i, req.now)]
        elif feature == "sknn":
            now = req.now if req.now >= 0 else int(req.sequence[-1])
            code, x = "watching_now", names[now]
        elif feature == "next_episode":
            code, x = "next_episode", names[req.now]  # the catalog names episodes, not series
        elif feature == "continue":
            code, x = "continue", ""
        else:
            code, x = "trending", ""
        text = REASONS[code].format(x=x, y=names[i])
        return RecommendedItem(self._ids[i], round(score, 6), code, text)

    def _closest_liked(self, items: np.ndarray, liked: np.ndarray) -> np.ndarray:
        """Per title, the liked title most similar to it (-1 when none is liked)."""
        if len(liked) == 0 or len(items) == 0:
            return np.full(len(items), -1, dtype=np.int64)
        m = self.model
        if m.unit_factors is not None:
            sim = m.unit_factors[items] @ m.unit_factors[liked].T
        elif m.model.similarity is not None:
            sim = m.model.similarity[liked][:, items].toarray().T
        else:
            sim = np.zeros((len(items), len(liked)), dtype=np.float32)
        return liked[np.argmax(sim, axis=1)]

    # ------------------------------------------------------------------ parsing

    def _parse(self, s: SessionSignals) -> _Request:
        m = self.model
        index = m.title_index
        unknown: list[str] = []

        def idx(titles) -> np.ndarray:
            out = []
            for t in titles:
                i = index.get(t)
                if i is None:
                    unknown.append(t)
                else:
                    out.append(i)
            return np.asarray(out, dtype=np.int64)

        sequence = idx(s.sequence)
        values: dict[int, float] = {}
        for it in s.interactions:
            i = index.get(it.title_id)
            if i is None:
                continue
            v = _interaction_value(it)
            if v is not None:
                values[i] = v if v < 0 else max(values.get(i, 0.0), v)
        now_title = s.now
        now = index.get(now_title) if now_title else None
        if now_title and now is None:
            unknown.append(now_title)
        liked, disliked, completed = idx(s.liked), idx(s.disliked), idx(s.completed)
        for i in liked:
            values[int(i)] = max(values.get(int(i), 0.0), KIND_VALUE["like"])
        for i in disliked:
            values[int(i)] = -1.0
        prog_titles = list(s.progress)
        prog_idx = idx(prog_titles)
        complete_by_pct = in_progress = prog_idx
        if len(prog_idx):
            pct = np.array([s.progress[t] for t in prog_titles if t in index], dtype=np.float32)
            complete_by_pct = prog_idx[pct >= COMPLETE_PCT]
            in_progress = prog_idx[(pct >= CONTINUE_MIN_PCT) & (pct < COMPLETE_PCT)]
        shown = idx(t for t, n in s.impressions.items() if int(n) >= IMPRESSION_LIMIT)
        user_row = m.user_index.get(s.user_id, -1) if s.user_id is not None else -1
        excluded = self._history_excluded(user_row)
        blocked = ~m.available  # a new mask per request
        blocked[excluded] = True
        if len(in_progress):  # continue watching beats the batch exclusion
            blocked[in_progress] = ~m.available[in_progress]
        for rows in (disliked, completed, complete_by_pct, shown):
            if len(rows):
                blocked[rows] = True
        if now is not None:
            blocked[now] = True
        if len(in_progress):
            in_progress = np.setdiff1d(in_progress, np.concatenate([completed, disliked]))
        return _Request(
            user_row=user_row,
            sequence=sequence,
            values=values,
            now=-1 if now is None else int(now),
            liked=liked,
            blocked=blocked,
            in_progress=in_progress,
            unknown=list(dict.fromkeys(unknown)),
        )

    def _history_excluded(self, row: int) -> np.ndarray:
        if row < 0:
            return np.zeros(0, dtype=np.int64)
        h = self.model.exclude
        return h.indices[h.indptr[row] : h.indptr[row + 1]].astype(np.int64)


_CONTINUE, _NEXT_EPISODE = FEATURES.index("continue"), FEATURES.index("next_episode")


def _reason_features(contrib: np.ndarray) -> list[str]:
    """Per row of contributions, the feature its reason names: continue watching, then
    next episode, name themselves; else the feature that contributes most (trending when
    none does)."""
    if len(contrib) == 0:
        return []
    best = np.argmax(contrib, axis=1)
    best[np.max(contrib, axis=1, initial=0.0) <= 0] = -1
    best[contrib[:, _NEXT_EPISODE] > 0] = _NEXT_EPISODE
    best[contrib[:, _CONTINUE] > 0] = _CONTINUE
    return [FEATURES[b] if b >= 0 else "trending" for b in best.tolist()]


def _interaction_value(it: Interaction) -> float | None:
    if it.kind == "dislike":
        return -1.0
    if it.kind == "rating":
        if it.value is None:
            return None
        stars = float(it.value)
        return -1.0 if stars <= 2 else 1.0 + max(stars - 3.0, 0.0) / 4.0
    return KIND_VALUE.get(it.kind)


def _scaled_columns(x: np.ndarray) -> np.ndarray:
    """Each column over its maximum (a column whose maximum is not positive: zeros)."""
    top = np.max(x, axis=0, initial=0.0)
    positive = top > 0
    out = x / np.where(positive, top, 1.0).astype(x.dtype)
    out[:, ~positive] = 0.0
    return out


def _row(m, i: int) -> tuple[np.ndarray, np.ndarray]:
    return m.indices[m.indptr[i] : m.indptr[i + 1]], m.data[m.indptr[i] : m.indptr[i + 1]]


class _Scorer:
    """Features of the candidates of one request (columns in FEATURES order)."""

    def __init__(self, rec: LiveRecommender, req: _Request, k: int) -> None:
        self.m, self.w, self.req, self.k = rec.model, rec.weights, req, k
        self.pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.transition_from: dict[int, int] = {}

    def pools_(self) -> None:
        m, req = self.m, self.req
        if req.user_row >= 0:
            self.pools["batch"] = _row(m.candidates, req.user_row)
        recent = _distinct_latest(req.sequence, len(TRANSITION_DECAY))
        t_items, t_scores, t_from = [], [], []
        for weight, x in zip(TRANSITION_DECAY, recent, strict=False):
            idx, conf = _row(m.transitions, int(x))
            t_items.append(idx)
            t_scores.append(conf * weight)
            t_from.append(np.full(len(idx), x))
        if t_items and sum(len(x) for x in t_items):
            items, scores, froms = map(np.concatenate, (t_items, t_scores, t_from))
            order = np.lexsort((-scores, items))  # per title, its strongest source first
            items, scores, froms = items[order], scores[order], froms[order]
            first = np.r_[True, items[1:] != items[:-1]]
            self.transition_from = dict(
                zip(items[first].tolist(), froms[first].tolist(), strict=True)
            )
            sums = np.add.reduceat(scores, np.flatnonzero(first))
            self.pools["transitions"] = (items[first], sums)
        if len(req.sequence):
            self.pools["sknn"] = m.sessions.scores(
                req.sequence, sample=self.w.sknn_sample, k=self.w.sknn_k
            )
        if req.now >= 0 and m.next_episode[req.now] >= 0:
            self.pools["next_episode"] = (
                np.array([m.next_episode[req.now]], np.int64),
                np.ones(1, np.float32),
            )
        if len(req.in_progress):
            self.pools["continue"] = (req.in_progress, np.ones(len(req.in_progress), np.float32))
        n_trend = TRENDING_CANDIDATES + self.k
        trend = m.trending_order[:n_trend]
        self.pools["trending"] = (trend, m.trending[trend])

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        self.pools_()
        fold_vec, fold_sparse = self._fold_in()
        self._model_pool(fold_sparse)
        cand = np.unique(np.concatenate([p[0] for p in self.pools.values()]).astype(np.int64))
        feats = np.zeros((len(cand), len(FEATURES)), dtype=np.float32)
        for name, (items, scores) in self.pools.items():
            if name == "model":
                continue
            col = FEATURES.index(name)
            feats[np.searchsorted(cand, items), col] = scores
        feats[:, 1] = np.maximum(self._model_scores(cand, fold_vec, fold_sparse), 0)
        return cand, _scaled_columns(feats)

    def _model_pool(self, fold_sparse) -> None:
        """The model's own candidates: the titles most similar to the session's latest
        titles and the liked ones (factor models), or the strongest titles of the
        sparse fold-in (item-item models)."""
        m, req = self.m, self.req
        if fold_sparse is not None:
            idx, val = fold_sparse
            top = np.argsort(-val, kind="stable")[:FOLD_IN_CANDIDATES]
            self.pools["model"] = (idx[top], val[top])
            return
        seeds = np.unique(
            np.concatenate([_distinct_latest(req.sequence, MODEL_SEEDS), req.liked]).astype(
                np.int64
            )
        )
        if len(seeds) and m.similar.nnz:
            lo, hi = m.similar.indptr[seeds], m.similar.indptr[seeds + 1]
            items = m.similar.indices[ranges(lo, hi)].astype(np.int64)
            self.pools["model"] = (items, np.zeros(len(items), np.float32))

    def _fold_in(self):
        """The user's taste with the session folded in: a vector (factor models), a
        sparse score (indices, values) over the neighbours of the history (item-item
        models), or nothing (no evidence, popularity)."""
        m, req = self.m, self.req
        idx, val = _history_values(m, req)
        if len(idx) == 0:
            return None, None
        model = m.model
        if model.item_factors is not None:
            return _factor_fold_in(m, idx, val), None
        if model.similarity is not None:
            pos = val > 0
            if not pos.any():
                return None, None
            s = model.similarity
            lo, hi = s.indptr[idx[pos]], s.indptr[idx[pos] + 1]
            cols = s.indices[ranges(lo, hi)]
            weights = s.data[ranges(lo, hi)] * np.repeat(val[pos], hi - lo)
            items, inverse = np.unique(cols, return_inverse=True)
            return None, (items.astype(np.int64), np.bincount(inverse, weights=weights))
        return None, None

    def _model_scores(self, cand, fold_vec, fold_sparse) -> np.ndarray:
        model = self.m.model
        if fold_vec is not None:
            return (model.item_factors[cand] @ fold_vec).astype(np.float32)
        if fold_sparse is not None:
            idx, val = fold_sparse
            pos = np.clip(np.searchsorted(idx, cand), 0, max(len(idx) - 1, 0))
            hit = (idx[pos] == cand) if len(idx) else np.zeros(len(cand), bool)
            return np.where(hit, val[pos] if len(idx) else 0.0, 0.0).astype(np.float32)
        if model.item_factors is None and model.similarity is None:
            return model.popularity[cand].astype(np.float32)
        return np.zeros(len(cand), np.float32)


def _distinct_latest(seq: np.ndarray, n: int) -> list[int]:
    out: list[int] = []
    for x in seq[::-1].tolist():
        if x not in out:
            out.append(x)
            if len(out) == n:
                break
    return out


def _history_values(m: ServingModel, req: _Request) -> tuple[np.ndarray, np.ndarray]:
    """The user's batch history row with the session's values on top (session wins)."""
    if req.user_row >= 0:
        h_idx, h_val = _row(m.history, req.user_row)
    else:
        h_idx, h_val = np.zeros(0, np.int32), np.zeros(0, np.float32)
    if not req.values:
        return h_idx.astype(np.int64), h_val.astype(np.float32)
    s_idx = np.fromiter(req.values.keys(), dtype=np.int64, count=len(req.values))
    s_val = np.fromiter(req.values.values(), dtype=np.float32, count=len(req.values))
    keep = ~np.isin(h_idx, s_idx)
    return (
        np.concatenate([h_idx[keep].astype(np.int64), s_idx]),
        np.concatenate([h_val[keep].astype(np.float32), s_val]),
    )


def _factor_fold_in(m: ServingModel, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
    """ALS: the user factors implicit's recalculate_user computes for this history
    (confidence c = alpha * value; A = YtY + reg I + sum (|c| - 1) y y^T; b = sum_{c>0}
    c y). BPR (no closed form): the mean factors of the positive titles."""
    f = m.model.item_factors
    if m.spec.kind != "als":
        pos = val > 0
        return f[idx[pos]].mean(axis=0) if pos.any() else np.zeros(f.shape[1], f.dtype)
    c = val.astype(np.float32) * np.float32(m.spec.params["alpha"])
    y = f[idx]
    a = m.fold_in_base + ((y * (np.abs(c) - 1.0)[:, None]).T @ y).astype(np.float64)
    b = (y.T @ np.where(c > 0, c, 0.0)).astype(np.float64)
    return np.linalg.solve(a, b).astype(np.float32)
