"""Title -> similar titles: collaborative similarity blended with content similarity.

score(i, j) = b * collaborative(i, j) + (1 - b) * content(i, j), with
b = min(v_i / (v_i + shrink), v_j / (v_j + shrink)) from the titles' viewer counts:
titles with many viewers lean on who watched them, titles with few (or new ones,
unknown to the model) on their category and keywords.

content(i, j) = 0.5 * same category + 0.5 * Jaccard of the keyword sets.
Other episodes of the title's own series are left out (the next-episode rail covers
them), and a series appears at most once, as its first available episode.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ml import interactions as ia
from ml.models import TrainedModel

BLOCK_CELLS = 4_000_000


def _keyword_matrix(keywords: pa.Array, n: int) -> sp.csr_matrix:
    """Titles x keywords, 0/1, from comma-separated keyword text (vectorised)."""
    lists = pc.split_pattern(pc.utf8_lower(pc.fill_null(keywords, "")), ",")
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists)).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(n), lengths)
    keep = flat != ""
    vocab, cols = np.unique(flat[keep].astype(object), return_inverse=True)
    m = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (rows[keep], cols)), shape=(n, max(len(vocab), 1))
    )
    m.data[:] = 1.0
    return m


def content_similarity(
    category: np.ndarray, keywords: sp.csr_matrix, rows: np.ndarray
) -> np.ndarray:
    """Dense block: content similarity of titles `rows` to every title."""
    same = (category[rows][:, None] == category[None, :]).astype(np.float32)
    inter = (keywords[rows] @ keywords.T).toarray()
    sizes = np.asarray(keywords.sum(axis=1)).ravel()
    union = sizes[rows][:, None] + sizes[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, inter / union, 0.0)
    return 0.5 * same + 0.5 * jaccard.astype(np.float32)


def _collaborative_side(
    model: TrainedModel | None, model_title_ids: np.ndarray | None, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, sp.csr_matrix | None]:
    """The model's view on the catalog's index: which titles it knows, their unit
    factors (factor models) or a catalog x catalog similarity (kNN)."""
    size = len(ids)
    known = np.zeros(size, dtype=bool)
    factors = sim_rows = None
    if model is None or model_title_ids is None:
        return known, factors, sim_rows
    pos = ia.lookup(np.asarray(model_title_ids, dtype=object), ids)
    known = pos >= 0
    if model.item_factors is not None:
        f = np.zeros((size, model.item_factors.shape[1]), dtype=np.float32)
        f[known] = model.item_factors[pos[known]]
        norms = np.linalg.norm(f, axis=1)
        norms[norms == 0] = 1.0
        factors = f / norms[:, None]
    elif model.similarity is not None:
        to_model = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float32), (np.flatnonzero(known), pos[known])),
            shape=(size, model.n_items),
        )
        sim_rows = to_model @ model.similarity @ to_model.T  # catalog x catalog
    return known, factors, sim_rows


def _series_entries(
    ids: np.ndarray, series: np.ndarray, available: np.ndarray, episode_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per title: its series key (the title itself for a movie) and the index of the
    title that represents it, a series' first available episode."""
    size = len(ids)
    series_key = np.where(series == None, ids, series).astype(object)  # noqa: E711
    entry = np.arange(size)
    is_ep = series != None  # noqa: E711
    if is_ep.any():
        eo = np.where(is_ep & available, np.nan_to_num(episode_order.astype(float), nan=1e9), 1e12)
        by_series = np.lexsort((eo, series_key))
        sk = series_key[by_series]
        first = np.r_[True, sk[1:] != sk[:-1]]
        group = np.cumsum(first) - 1
        entry[by_series] = by_series[first][group]
    return series_key, entry


def similar_titles(
    catalog: pa.Table,
    model: TrainedModel | None,
    model_title_ids: np.ndarray | None,
    viewers: np.ndarray,
    n: int = 20,
    shrink: float = 20.0,
) -> pa.Table:
    """Top-n similar available titles for every available catalog title.

    catalog: ml.interactions.catalog() (any order); viewers: distinct viewers per
    catalog row. The model's item factors (or kNN similarity) are mapped onto the
    catalog by title id; titles the model does not know get content only.
    """
    order = np.argsort(np.asarray(catalog["title_id"].to_numpy(zero_copy_only=False), object))
    catalog = catalog.take(pa.array(order))
    viewers = np.asarray(viewers, dtype=np.float64)[order]
    ids = np.asarray(catalog["title_id"].to_numpy(zero_copy_only=False), dtype=object)
    size = len(ids)
    category = np.asarray(catalog["category"].to_numpy(zero_copy_only=False), dtype=object)
    series = np.asarray(catalog["series_id"].to_numpy(zero_copy_only=False), dtype=object)
    available = np.asarray(catalog["is_available"].to_numpy(zero_copy_only=False), dtype=bool)
    episode_order = catalog["episode_order"].to_numpy(zero_copy_only=False)
    keywords = _keyword_matrix(catalog["keywords"].combine_chunks(), size)

    known, factors, sim_rows = _collaborative_side(model, model_title_ids, ids)
    trust = np.where(known, viewers / (viewers + shrink), 0.0).astype(np.float32)

    series_key, entry = _series_entries(ids, series, available, episode_order)

    n_out = min(n, max(size - 1, 0))
    out_src, out_dst, out_score, out_collab, out_content, out_trust = [], [], [], [], [], []
    step = max(1, BLOCK_CELLS // max(size, 1))
    sources = np.flatnonzero(available)  # a title page exists for available titles only
    for start in range(0, len(sources), step):
        rows = sources[start : start + step]
        content = content_similarity(category, keywords, rows)
        if factors is not None:
            collab = factors[rows] @ factors.T
        elif sim_rows is not None:
            collab = sim_rows[rows].toarray()
        else:
            collab = np.zeros_like(content)
        b = np.minimum(trust[rows][:, None], trust[None, :])
        score = b * collab + (1.0 - b) * content
        blocked = ~available[None, :] | (series_key[rows][:, None] == series_key[None, :])
        score[blocked] = -np.inf
        # keep the best title per series, shown as the series' entry episode
        cand = np.argsort(-score, axis=1, kind="stable")[:, : min(size, 4 * n_out + 8)]
        cand_score = np.take_along_axis(score, cand, axis=1)
        keys = series_key[cand]
        r = np.repeat(np.arange(len(rows)), cand.shape[1])
        flat_keys, flat_score = keys.ravel(), cand_score.ravel()
        o = np.lexsort((-flat_score, flat_keys, r))
        first = np.r_[True, (r[o][1:] != r[o][:-1]) | (flat_keys[o][1:] != flat_keys[o][:-1])]
        keep_flat = np.zeros(len(r), dtype=bool)
        keep_flat[o[first]] = True
        keep_flat &= np.isfinite(flat_score)
        kept_score = np.where(keep_flat, flat_score, -np.inf).reshape(cand.shape)
        top = np.argsort(-kept_score, axis=1, kind="stable")[:, :n_out]
        best = np.take_along_axis(cand, top, axis=1)
        best_score = np.take_along_axis(kept_score, top, axis=1)
        valid = np.isfinite(best_score)
        src = np.repeat(rows, n_out).reshape(best.shape)
        out_src.append(src[valid])
        dst = best[valid]
        out_dst.append(dst)
        out_score.append(best_score[valid])
        local = np.repeat(np.arange(len(rows)), n_out).reshape(best.shape)[valid]
        out_collab.append(collab[local, dst])
        out_content.append(content[local, dst])
        out_trust.append(b[local, dst])

    src = np.concatenate(out_src) if out_src else np.zeros(0, np.int64)
    dst = np.concatenate(out_dst) if out_dst else np.zeros(0, np.int64)
    score = np.concatenate(out_score) if out_score else np.zeros(0, np.float32)
    o = np.lexsort((-score, src))
    src, dst, score = src[o], dst[o], score[o]
    collab = np.concatenate(out_collab)[o] if out_collab else np.zeros(0, np.float32)
    content = np.concatenate(out_content)[o] if out_content else np.zeros(0, np.float32)
    trust_used = np.concatenate(out_trust)[o] if out_trust else np.zeros(0, np.float32)
    starts = np.r_[0, np.flatnonzero(src[1:] != src[:-1]) + 1] if len(src) else np.zeros(0, int)
    rank = np.arange(len(src)) - np.repeat(starts, np.diff(np.r_[starts, len(src)]))
    shown = entry[dst]
    return pa.table(
        {
            "title_id": pa.array(ids[src].astype(str)),
            "rank": pa.array((rank + 1).astype(np.int32)),
            "similar_title_id": pa.array(ids[shown].astype(str)),
            "matched_title_id": pa.array(ids[dst].astype(str)),
            "score": pa.array(score.astype(np.float32)),
            "collaborative_score": pa.array(collab.astype(np.float32)),
            "content_score": pa.array(content.astype(np.float32)),
            "collaborative_weight": pa.array(trust_used.astype(np.float32)),
            "is_same_category": pa.array(category[src] == category[dst]),
        }
    )
