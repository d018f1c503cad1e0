"""Ranking metrics at k from a top-k id matrix and a held-out relevance matrix.

Vectorised over users. Definitions (binary relevance, users with at least one
held-out item):

- precision@k: hits / k, averaged over users (Microsoft Recommenders' definition);
- recall@k: hits / relevant, averaged over users;
- ndcg@k: DCG with 1 / log2(rank + 1), over the ideal DCG of min(k, relevant) hits;
- map@k: sum of precision at each hit / min(k, relevant), averaged over users.

ndcg@k and map@k are exactly implicit.evaluation's; implicit's "precision" divides
all hits by the sum of min(k, relevant), reported here as ``precision_capped``.
A test checks both against implicit.evaluation.ranking_metrics_at_k.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRICS = ("precision", "recall", "ndcg", "map")


def hit_matrix(top_ids: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """hits[u, r] = the item at rank r of user u is relevant (negative ids never are)."""
    relevant = sp.csr_matrix(relevant)
    relevant.sort_indices()
    n_users, k = top_ids.shape
    n_items = relevant.shape[1]
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    keys = rows * n_items + relevant.indices
    ids = top_ids.astype(np.int64)
    want = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.maximum(ids, 0)
    if len(keys) == 0:
        return np.zeros((n_users, k), dtype=bool)
    pos = np.clip(np.searchsorted(keys, want), 0, len(keys) - 1)
    return (keys[pos] == want) & (ids >= 0)


def per_user(top_ids: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Each metric per user (NaN for users without held-out items)."""
    top_ids = top_ids[:, :k]
    if top_ids.shape[1] < k:
        pad = np.full((top_ids.shape[0], k - top_ids.shape[1]), -1, dtype=top_ids.dtype)
        top_ids = np.hstack([top_ids, pad])
    hits = hit_matrix(top_ids, relevant)
    n_rel = np.diff(sp.csr_matrix(relevant).indptr).astype(np.float64)
    has = n_rel > 0
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    capped = np.minimum(n_rel, k)
    n_hits = hits.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        idcg = np.where(has, ideal[np.maximum(capped.astype(int), 1) - 1], np.nan)
        precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        out = {
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "ndcg": (hits * discount).sum(1) / idcg,
            "map": (precision_at * hits).sum(1) / capped,
            "hits": n_hits.astype(np.float64),
            "capped_relevant": capped,
        }
    for key in out:
        out[key] = np.where(has, out[key], np.nan)
    return out


def summarize(per: dict[str, np.ndarray], k: int, mask: np.ndarray | None = None) -> dict:
    """Averages over the users with held-out items (optionally a subset of them)."""
    has = ~np.isnan(per["ndcg"])
    if mask is not None:
        has &= mask
    users = int(has.sum())
    out = {f"{m}_at_{k}": float(np.mean(per[m][has])) if users else float("nan") for m in METRICS}
    capped = per["capped_relevant"][has].sum()
    out[f"precision_capped_at_{k}"] = float(per["hits"][has].sum() / capped) if capped else 0.0
    out["users"] = users
    return out


def ranking_metrics(top_ids: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> dict:
    return summarize(per_user(top_ids, relevant, k), k)


def coverage(top_ids: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalog (n_items) that appears in at least one user's top k."""
    ids = top_ids[:, :k]
    ids = ids[ids >= 0]
    return float(len(np.unique(ids)) / n_items) if n_items else 0.0
