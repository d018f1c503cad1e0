"""The models: implicit's ALS (main), BPR and item-kNN, EASE^R, and a popularity baseline.

A fitted model is kept as plain arrays (factors, an item x item matrix: the kNN
similarity or EASE's weights, item popularity) so it can be saved, loaded and
scored without pickles.
Scoring is batched: implicit's native top-k for the factor models, numpy over
dense score blocks for the others; no Python runs per user.

EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders") is a closed form:
with X the positive part of the user x item matrix, G = X^T X + l2 * I,
P = G^-1, its item weights are B = -P / diag(P) (column j divided by -P[j, j])
with diag(B) = 0, and a user's scores are x @ B. B is kept as the model's
``similarity`` (CSR, rows: history items, columns: scored items), so EASE scores,
explains (``ml.recommend.explain``: the largest term of x @ B) and feeds similar
titles exactly as item-kNN does. Fitting inverts a dense item x item matrix, so
it is refused above ``EASE_MAX_ITEMS`` titles (see there).

Scoring an arbitrary history (a session, a user the model never saw), any kind:
build a ``scipy.sparse.csr_matrix`` with one row per history and the model's item
columns (values as in ml.interactions: positive evidence, negatives for
dislikes), then

- ``model.scores(history)``: raw scores, one dense float32 row per history, every
  item (nothing filtered). ALS folds the history in (``fold_in``) and multiplies
  by the item factors; EASE is ``positive part @ B``; item-kNN is ``positive part
  @ similarity``; popularity ignores the history; BPR cannot score a user it was
  not trained on (pass ``rows``, the users' rows in its training matrix).
- ``model.recommend(history, exclude, n)``: the top n items per row, never one
  in ``exclude`` (same shape; e.g. the history itself) or ``filter_items``.
  EASE and item-kNN recommend only items with a positive score (an item no
  history title points to is not a recommendation).
- ``model.fold_in(history)``: ALS user factors for the history; for EASE the
  history's scores (its representation is x @ B itself, nothing to solve).
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
from scipy.linalg import get_lapack_funcs
from threadpoolctl import threadpool_limits

KINDS = ("als", "bpr", "bm25", "cosine", "ease", "popularity")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15},
    "bpr": {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
    "bm25": {"K": 100, "K1": 1.2, "B": 0.75},
    "cosine": {"K": 100},
    "ease": {"l2": 500.0},
    "popularity": {},
}

# EASE's B is dense but for its diagonal and the titles without evidence, kept as
# CSR: 8 bytes per pair of titles, 7.2 GB at 30,000 titles. Fitting peaks at about
# 12 bytes per pair (the Gram matrix, inverted in place into B in float32, and the
# CSR built from it): 10.8 GB at 30,000. Larger catalogs are refused before
# anything is allocated.
EASE_MAX_ITEMS = 30_000
# Up to this many titles the inversion runs in float64 (under a second at 4,096);
# above, in float32, in place (half the memory, about twice as fast).
EASE_FLOAT64_ITEMS = 4_096

# EASE scores many histories against a dense copy of B up to this size (a sparse x
# dense product takes about a fifth of the CPU of sparse x sparse on a dense B);
# above it, or for histories with fewer stored values than B has rows (a session:
# the copy would cost more than it saves), against the CSR itself. 1 GiB: 16,384
# titles.
DENSE_SCORING_BYTES = 1 << 30

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


def ease_size_problem(n_items: int) -> str | None:
    """Why an EASE model over n_items cannot be fitted (its memory cap), or None."""
    if n_items <= EASE_MAX_ITEMS:
        return None
    return (
        f"EASE needs a dense {n_items:,} x {n_items:,} item matrix "
        f"({8 * n_items**2 / 1e9:.1f} GB to keep, about {12 * n_items**2 / 1e9:.1f} GB "
        f"while fitting); the cap is {EASE_MAX_ITEMS:,} titles "
        "(ml.models.EASE_MAX_ITEMS). Use ALS or item-kNN for this catalog."
    )


def check_ease_size(n_items: int) -> None:
    """Refuse an EASE model whose dense item x item matrix would pass the memory cap."""
    problem = ease_size_problem(n_items)
    if problem:
        raise ValueError(problem)


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
        """ALS user factors recomputed from a (current) history, with the items fixed;
        for EASE, the history's scores (positive part @ B: nothing to solve).

        A promoted model keeps serving users whose history grew since it was
        trained, and users it never saw.
        """
        if self.kind == "ease":
            return self.scores(history)
        if self.kind != "als":
            raise ValueError(f"fold-in needs an ALS or EASE model, not {self.kind}")
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

    def scores(self, history: sp.csr_matrix, rows: np.ndarray | None = None) -> np.ndarray:
        """Raw scores of every item for each history row (dense float32, nothing filtered).

        What `recommend` ranks before it drops excluded and filtered items: ALS
        user factors (folded in from history, or the trained ones of ``rows``)
        times item factors; BPR the same with trained users only (``rows``
        required; a row of -1 scores 0); EASE and item-kNN positive part of the
        history times B or the similarity; popularity the same row for everyone.
        Memory: one dense row per history; score large user sets with `recommend`.
        """
        history = sp.csr_matrix(history)
        if history.shape[1] != self.n_items:
            raise ValueError(
                f"history has {history.shape[1]} item columns, the model {self.n_items}"
            )
        if self.kind in ("als", "bpr"):
            vectors = self.user_vectors(history, rows)
            return np.asarray(vectors @ self.item_factors.T, dtype=np.float32)
        if self.kind == "popularity":
            return np.repeat(self.popularity[None, :], history.shape[0], axis=0)
        positives = positive_part(history)
        return _times(positives, self._item_weights(positives.nnz))

    def _item_weights(self, history_nnz: int) -> sp.csr_matrix | np.ndarray:
        """The item x item matrix histories are multiplied by: EASE's B as a dense
        array when it fits DENSE_SCORING_BYTES and the histories hold at least as
        many values as B has rows, else the CSR similarity."""
        dense_fits = 4 * self.n_items**2 <= DENSE_SCORING_BYTES
        if self.kind == "ease" and dense_fits and history_nnz >= self.n_items:
            return self.similarity.toarray()
        return self.similarity

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
        positives = weights = None
        if self.kind != "popularity":
            positives = positive_part(history)
            weights = self._item_weights(positives.nnz)
        for start in range(0, n_users, step):
            stop = min(start + step, n_users)
            block = self._dense_scores(positives, weights, start, stop)
            ids[start:stop], scores[start:stop] = top_n(block, exclude[start:stop], mask, n)
        return ids, scores

    def _dense_scores(
        self,
        positives: sp.csr_matrix | None,
        weights: sp.csr_matrix | np.ndarray | None,
        start: int,
        stop: int,
    ) -> np.ndarray:
        if self.kind == "popularity":
            # ties broken by item index, so rankings are reproducible
            tie = np.arange(self.n_items, dtype=np.float64) / (10.0 * self.n_items)
            row = (self.popularity.astype(np.float64) - tie).astype(np.float32)
            return np.repeat(row[None, :], stop - start, axis=0)
        # item-kNN and EASE alike: history x item-item weights
        block = _times(positives[start:stop], weights)
        block[block <= 0] = -np.inf  # no evidence for the item: not a recommendation
        return block

    def item_similarity(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Similarity of items[k] to others[k] (pairs), as the model sees it.

        Factor models: cosine of the item factors. Item-kNN and EASE: the weight
        of others[k] (a history title) in items[k]'s score, similarity[others,
        items] (for EASE, B[others, items]: exactly that title's term of the score
        per unit of the user's value for it).
        """
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


def _times(rows: sp.csr_matrix, weights: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """rows @ weights as a dense float32 array (weights sparse or dense)."""
    out = rows.astype(np.float32) @ weights
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


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


def dense_to_csr(
    dense: np.ndarray, index: np.ndarray | None = None, n: int | None = None
) -> sp.csr_matrix:
    """A square float32 matrix as an n x n CSR without its zeros, filled in row blocks.

    index: the item of each row and column of dense, increasing (default: the
    identity), so a matrix over some items lands in a larger n x n one. scipy's own
    conversion builds int64 coordinates of every nonzero on the way (16 bytes
    each); this needs only the CSR itself (8 bytes per nonzero).
    """
    m = dense.shape[0]
    index = np.arange(m) if index is None else np.asarray(index, dtype=np.int64)
    if len(index) != m or np.any(np.diff(index) <= 0):
        raise ValueError("index: one increasing item per row of the matrix")
    n = m if n is None else n
    step = max(1, BLOCK_CELLS // max(m, 1))
    blocks = range(0, m, step)
    counts = np.zeros(n, dtype=np.int64)
    for start in blocks:
        counts[index[start : start + step]] = np.count_nonzero(dense[start : start + step], 1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=index_dtype)
    for start in blocks:
        # rows in increasing item order: a block's nonzeros are one slice of data
        block = dense[start : start + step]
        rows, cols = np.nonzero(block)
        lo = indptr[index[start]]
        data[lo : lo + len(rows)] = block[rows, cols]
        indices[lo : lo + len(rows)] = index[cols]
    return sp.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(n, n))


def _gram(x: sp.csr_matrix, dtype: type) -> np.ndarray:
    """X^T X as a dense matrix, built in row blocks (bounded sparse temporaries)."""
    n = x.shape[1]
    g = np.empty((n, n), dtype=dtype)
    xc = x.tocsc()
    step = max(1, BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        g[start:stop] = (xc[:, start:stop].T @ x).toarray()
    return g


def _spd_inverse_in_place(g: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite C-ordered matrix, in its memory.

    LAPACK potrf + potri (Cholesky; half the work of an LU inverse) on the
    Fortran view of g, which is g itself since g is symmetric; potri leaves one
    triangle, mirrored here in blocks.
    """
    f = g.T  # Fortran-contiguous view, same memory
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (f,))
    c, info = potrf(f, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix is not positive definite ({info})")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the inverse failed ({info})")
    out = inv.T  # C view: the lower triangle (upper of the Fortran view) holds the inverse
    n = out.shape[0]
    step = max(1, BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        # rows start:stop, columns after the row: copy from the lower triangle
        block = out[start:stop]
        lower_t = out[:, start:stop].T  # (stop-start, n): column j of out = row j mirrored
        cols = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        block[cols] = lower_t[cols]
    return out


def ease_solve(train: sp.csr_matrix, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """EASE^R over the items with evidence: (their indices, B among them).

    G = X^T X + l2 I, P = G^-1, B = -P / diag(P), diag(B) = 0, X the positive part
    of train. Items nobody interacted with form their own block of G (l2 on the
    diagonal only), so their rows and columns of B are 0: only the others are
    inverted. float64 up to EASE_FLOAT64_ITEMS items, float32 in place above.
    """
    n = train.shape[1]
    check_ease_size(n)
    if not l2 > 0:
        raise ValueError(f"EASE needs l2 > 0 (a positive definite G), not {l2}")
    x = positive_part(sp.csr_matrix(train, dtype=np.float32))
    active = np.flatnonzero(np.bincount(x.indices, minlength=n) > 0)
    m = len(active)
    if m == 0:
        return active, np.zeros((0, 0), dtype=np.float32)
    dtype = np.float64 if m <= EASE_FLOAT64_ITEMS else np.float32
    g = _gram(x[:, active] if m < n else x, dtype)
    g[np.diag_indices(m)] += l2
    p = _spd_inverse_in_place(g)
    diag = np.diag(p).copy()
    p /= -diag[None, :]
    np.fill_diagonal(p, 0.0)
    return active, np.ascontiguousarray(p, dtype=np.float32)


def ease_weights(train: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE^R's B as a dense n_items x n_items float32 matrix (see ease_solve)."""
    n = train.shape[1]
    active, b_active = ease_solve(train, l2)
    b = np.zeros((n, n), dtype=np.float32)
    b[np.ix_(active, active)] = b_active
    return b


def fit(spec: ModelSpec, train: sp.csr_matrix, seed: int = 42) -> TrainedModel:
    """Fit one model on a signed user × item matrix (negatives: see ml.interactions).

    ALS reads the signs; BPR, the kNN models and EASE see the positive part only.
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
    if spec.kind == "ease":  # numpy's BLAS with its own threads
        active, b = ease_solve(train, float(p["l2"]))
        model.similarity = dense_to_csr(b, active, train.shape[1])
    model.fit_seconds = time.perf_counter() - started
    return model
