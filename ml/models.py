"""The models: implicit's ALS (main), BPR and item-kNN, and a popularity baseline.

A fitted model is kept as plain arrays (factors, a similarity matrix, item
popularity) so it can be saved, loaded and scored without pickles. Scoring is
batched: implicit's native top-k for the factor models, numpy over dense score
blocks for the others; no Python runs per user.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.cpu.als import AlternatingLeastSquares as CpuALS
from implicit.cpu.bpr import BayesianPersonalizedRanking as CpuBPR
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from threadpoolctl import threadpool_limits

KINDS = ("als", "bpr", "bm25", "cosine", "popularity")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15},
    "bpr": {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
    "bm25": {"K": 100, "K1": 1.2, "B": 0.75},
    "cosine": {"K": 100},
    "popularity": {},
}

# Dense score blocks (users × titles) are cut to about this many cells.
BLOCK_CELLS = 4_000_000
NO_ITEM = -1
SMALL_NNZ = 200_000
_FLOOR = -1e37  # implicit scores filtered items -FLT_MAX


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """implicit's native loops bring their own threads; OpenBLAS threads on top of
    them make fitting many times slower (implicit warns about it)."""
    with threadpool_limits(1, "blas"):
        yield


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; one of {KINDS}")
        object.__setattr__(self, "params", {**DEFAULT_PARAMS[self.kind], **dict(self.params)})

    @property
    def label(self) -> str:
        if not self.params:
            return self.kind
        inner = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items()
        )
        return f"{self.kind}({inner})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(d["kind"], d.get("params", {}))


def positive_part(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.copy()
    out.data[out.data < 0] = 0
    out.eliminate_zeros()
    return out


def item_popularity(train: sp.csr_matrix) -> np.ndarray:
    """Users with positive evidence per item."""
    pos = train.data > 0
    return np.bincount(train.indices[pos], minlength=train.shape[1]).astype(np.float32)


@dataclass
class TrainedModel:
    spec: ModelSpec
    n_items: int
    popularity: np.ndarray
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    similarity: sp.csr_matrix | None = None
    fit_seconds: float = 0.0

    @property
    def kind(self) -> str:
        return self.spec.kind

    # ------------------------------------------------------------------ persistence

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"popularity": self.popularity}
        if self.user_factors is not None:
            out["user_factors"] = self.user_factors
            out["item_factors"] = self.item_factors
        if self.similarity is not None:
            s = self.similarity
            out.update(sim_data=s.data, sim_indices=s.indices, sim_indptr=s.indptr)
        return out

    @classmethod
    def from_arrays(cls, spec: ModelSpec, arrays: Mapping[str, np.ndarray]) -> TrainedModel:
        n_items = len(arrays["popularity"])
        similarity = None
        if "sim_data" in arrays:
            similarity = sp.csr_matrix(
                (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]),
                shape=(n_items, n_items),
            )
        return cls(
            spec=spec,
            n_items=n_items,
            popularity=np.asarray(arrays["popularity"]),
            user_factors=arrays.get("user_factors"),
            item_factors=arrays.get("item_factors"),
            similarity=similarity,
        )

    # ------------------------------------------------------------------ scoring

    def _implicit(self):
        """An implicit model object around the stored factors (for its native top-k)."""
        p = self.spec.params
        if self.kind == "als":
            m = CpuALS(
                factors=int(p["factors"]),
                regularization=float(p["regularization"]),
                alpha=float(p["alpha"]),
                iterations=int(p["iterations"]),
            )
        else:
            m = CpuBPR(factors=int(p["factors"]))
        m.item_factors = self.item_factors
        m.user_factors = self.user_factors
        return m

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """ALS user factors recomputed from a (current) history, with the items fixed.

        A promoted model keeps serving users whose history grew since it was
        trained, and users it never saw.
        """
        if self.kind != "als":
            raise ValueError("fold-in needs an ALS model")
        with single_threaded_blas():
            m = self._implicit()
            return m.recalculate_user(np.arange(history.shape[0]), history.tocsr())

    def user_vectors(
        self, history: sp.csr_matrix, rows: np.ndarray | None = None
    ) -> np.ndarray | None:
        if self.kind == "als":
            if rows is None:
                return self.fold_in(history)
            return self.user_factors[rows]
        if self.kind == "bpr":
            if rows is None:
                raise ValueError("BPR scores only the users it was trained on: pass rows")
            vec = self.user_factors[np.maximum(rows, 0)].copy()
            vec[rows < 0] = 0
            return vec
        return None

    def recommend(
        self,
        history: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        rows: np.ndarray | None = None,
        filter_items: np.ndarray | None = None,
        batch_size: int = 2000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items per user, never an excluded or filtered one.

        history and exclude have one row per user to score (same item columns as
        the model). rows: the users' rows in the training matrix, to use the trained
        user factors as they are (ALS otherwise folds them in from history).
        Returns ids (NO_ITEM where fewer than n items qualify) and scores.
        """
        history = sp.csr_matrix(history)
        exclude = sp.csr_matrix(exclude)
        n_users = history.shape[0]
        n = min(n, self.n_items)
        ids = np.full((n_users, n), NO_ITEM, dtype=np.int32)
        scores = np.full((n_users, n), -np.inf, dtype=np.float32)
        if n_users == 0 or n == 0:
            return ids, scores
        filter_items = (
            None
            if filter_items is None or len(filter_items) == 0
            else (np.asarray(filter_items, dtype=np.int32))
        )
        if self.kind in ("als", "bpr"):
            vectors = self.user_vectors(history, rows)
            with single_threaded_blas():
                model = self._implicit()
                for start in range(0, n_users, batch_size):
                    stop = min(start + batch_size, n_users)
                    model.user_factors = vectors[start:stop]
                    i, s = model.recommend(
                        np.arange(stop - start),
                        exclude[start:stop],
                        N=n,
                        filter_already_liked_items=True,
                        filter_items=filter_items,
                    )
                    ids[start:stop], scores[start:stop] = i, s
            missing = scores <= _FLOOR
            if self.kind == "bpr" and rows is not None:
                missing |= (rows < 0)[:, None]
            ids[missing] = NO_ITEM
            scores[missing] = -np.inf
            return ids, scores

        mask = np.zeros(self.n_items, dtype=bool)
        if filter_items is not None:
            mask[filter_items] = True
        step = max(1, BLOCK_CELLS // max(self.n_items, 1))
        positives = positive_part(history) if self.kind != "popularity" else None
        for start in range(0, n_users, step):
            stop = min(start + step, n_users)
            block = self._dense_scores(positives, start, stop)
            ids[start:stop], scores[start:stop] = top_n(block, exclude[start:stop], mask, n)
        return ids, scores

    def _dense_scores(self, positives: sp.csr_matrix | None, start: int, stop: int) -> np.ndarray:
        if self.kind == "popularity":
            # ties broken by item index, so rankings are reproducible
            tie = np.arange(self.n_items, dtype=np.float64) / (10.0 * self.n_items)
            row = (self.popularity.astype(np.float64) - tie).astype(np.float32)
            return np.repeat(row[None, :], stop - start, axis=0)
        block = (positives[start:stop] @ self.similarity).toarray().astype(np.float32)
        block[block <= 0] = -np.inf  # no evidence at all: not a recommendation
        return block

    def item_similarity(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Similarity of items[k] to others[k] (pairs), as the model sees it."""
        items = np.asarray(items, dtype=np.int64)
        others = np.asarray(others, dtype=np.int64)
        if self.item_factors is not None:
            f = self.item_factors
            norms = np.linalg.norm(f, axis=1)
            norms[norms == 0] = 1.0
            out = np.empty(len(items), dtype=np.float32)
            step = 1_000_000
            for s in range(0, len(items), step):
                a, b = items[s : s + step], others[s : s + step]
                out[s : s + step] = np.einsum("ij,ij->i", f[a], f[b]) / (norms[a] * norms[b])
            return out
        if self.similarity is not None:
            return sparse_lookup(self.similarity, others, items)
        return np.zeros(len(items), dtype=np.float32)


def sparse_lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """m[rows[k], cols[k]] for every k, vectorised (0 where absent)."""
    m = sp.csr_matrix(m)
    m.sort_indices()
    n_cols = m.shape[1]
    coo_rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = coo_rows * n_cols + m.indices
    want = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, want), 0, max(len(keys) - 1, 0))
    if len(keys) == 0:
        return np.zeros(len(want), dtype=np.float32)
    return np.where(keys[pos] == want, m.data[pos], 0).astype(np.float32)


def top_n(
    block: np.ndarray, exclude: sp.csr_matrix, mask: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n columns per row of a dense score block, without excluded or masked ones."""
    block = block.copy()
    block[:, mask] = -np.inf
    r, c = exclude.nonzero()
    block[r, c] = -np.inf
    n = min(n, block.shape[1])
    part = np.argpartition(-block, n - 1, axis=1)[:, :n]
    part_scores = np.take_along_axis(block, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    scores = np.take_along_axis(part_scores, order, axis=1)
    ids[~np.isfinite(scores)] = NO_ITEM
    return ids, scores


def fit(spec: ModelSpec, train: sp.csr_matrix, seed: int = 42) -> TrainedModel:
    """Fit one model on a signed user × item matrix (negatives: see ml.interactions).

    ALS reads the signs; BPR and the kNN models see the positive part only.
    """
    train = sp.csr_matrix(train, dtype=np.float32)
    p = spec.params
    started = time.perf_counter()
    model = TrainedModel(spec=spec, n_items=train.shape[1], popularity=item_popularity(train))
    # implicit's threads cost more than they bring on small matrices
    threads = 1 if train.nnz < SMALL_NNZ else 0
    with single_threaded_blas(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expects CSR input.*")
        if spec.kind == "als":
            m = AlternatingLeastSquares(
                factors=int(p["factors"]),
                regularization=float(p["regularization"]),
                alpha=float(p["alpha"]),
                iterations=int(p["iterations"]),
                random_state=seed,
                use_gpu=False,
                num_threads=threads,
            )
            m.fit(train, show_progress=False)
            model.user_factors, model.item_factors = m.user_factors, m.item_factors
        elif spec.kind == "bpr":
            m = BayesianPersonalizedRanking(
                factors=int(p["factors"]),
                learning_rate=float(p["learning_rate"]),
                regularization=float(p["regularization"]),
                iterations=int(p["iterations"]),
                random_state=seed,
                use_gpu=False,
                num_threads=threads,
            )
            m.fit(positive_part(train), show_progress=False)
            model.user_factors, model.item_factors = m.user_factors, m.item_factors
        elif spec.kind in ("bm25", "cosine"):
            if spec.kind == "bm25":
                m = BM25Recommender(
                    K=int(p["K"]), K1=float(p["K1"]), B=float(p["B"]), num_threads=threads
                )
            else:
                m = CosineRecommender(K=int(p["K"]), num_threads=threads)
            m.fit(positive_part(train), show_progress=False)
            model.similarity = sp.csr_matrix(m.similarity, dtype=np.float32)
    model.fit_seconds = time.perf_counter() - started
    return model
