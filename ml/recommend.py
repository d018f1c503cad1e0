"""Per-user top-N from the promoted model, with reasons, and cold start.

- warm users (any positive evidence): the model's top-N, never a title the user
  watched, completed or disliked, nor one that left the catalog or is unavailable; ALS
  folds the user's current history in, so a promoted model keeps serving fresh history;
- each recommendation names, among the titles the user watched (a valid play), liked
  or rated 4-5 stars, the one contributing most to it: the one maximising (the user's
  value for it) x (the model's similarity between it and the recommended title). For
  item-kNN and EASE^R this is exactly the score's largest term; for the factor models it
  reads the score through item-item cosine similarity. The reason says what the user did with it
  (``reason_kind``): "Because you liked X" (a like), else "Because you rated X 5/5"
  (a rating of 4 or 5), else "Because you watched X". A watchlist add, an abandoned or
  too-short play, or a completion without a valid play is never a reason;
- cold users (no positive evidence): the popularity of the categories they
  browsed (title clicks and expressed interests), then global popularity.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ml import interactions as ia
from ml.models import NO_ITEM, TrainedModel, positive_part
from ml.registry import Artifact

PAIR_BUDGET = 2_000_000  # (recommendation, history title) pairs scored at once

# What a reason may say about a title of the user's history, as one code per pair:
# 0 nothing (not a reason), 1 watched, 2 liked, 10 + n rated n stars.
WATCHED, LIKED, RATED = 1, 2, 10
MIN_REASON_RATING = 4
REASON_KINDS = ("watched", "liked", "rated")


def target_users(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    """Every user who may get recommendations: known and not deleted."""
    t = con.sql(
        "select user_id from marts.users where not coalesce(is_deleted, false) order by user_id"
    ).to_arrow_table()
    return np.asarray(t["user_id"].to_numpy(zero_copy_only=False), dtype=object)


def explain(
    model: TrainedModel, history: sp.csr_matrix, rec_ids: np.ndarray, max_history: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommendation, the history item contributing most (NO_ITEM if none).

    history: positive values, one row per user of rec_ids; only each user's
    ``max_history`` strongest titles are candidates. Users are processed in chunks;
    within a chunk, one batched matrix product (factor models) or one vectorised
    sparse lookup (item-kNN): no Python runs per user.
    """
    history = sp.csr_matrix(history)
    n_users, n = rec_ids.shape
    reason = np.full((n_users, n), NO_ITEM, dtype=np.int32)
    strength = np.zeros((n_users, n), dtype=np.float32)
    if n_users == 0 or n == 0 or (model.item_factors is None and model.similarity is None):
        return reason, strength  # popularity: no title of the user's explains it
    if model.item_factors is not None:
        f = model.item_factors.astype(np.float32)
        norms = np.linalg.norm(f, axis=1)
        norms[norms == 0] = 1.0
        unit = f / norms[:, None]
    step = max(1, PAIR_BUDGET // (n * max_history))
    for start in range(0, n_users, step):
        stop = min(start + step, n_users)
        hist_idx, hist_w = _strongest(history[start:stop], max_history)  # (B, M), padded -1
        recs = rec_ids[start:stop]
        if model.item_factors is not None:
            h = unit[np.maximum(hist_idx, 0)]  # (B, M, f)
            r = unit[np.maximum(recs, 0)]  # (B, n, f)
            sim = np.matmul(r, h.transpose(0, 2, 1))  # (B, n, M)
        else:
            b, m = hist_idx.shape
            rows = np.repeat(np.maximum(hist_idx, 0)[:, None, :], n, axis=1).ravel()
            cols = np.repeat(np.maximum(recs, 0)[:, :, None], m, axis=2).ravel()
            sim = model.item_similarity(cols, rows).reshape(b, n, m)
        contrib = sim * hist_w[:, None, :]
        contrib[np.broadcast_to((hist_idx < 0)[:, None, :], contrib.shape)] = -np.inf
        best = np.argmax(contrib, axis=2)  # (B, n)
        best_contrib = np.take_along_axis(contrib, best[:, :, None], axis=2)[:, :, 0]
        chosen = np.take_along_axis(hist_idx, best, axis=1)
        # a title pulling the score down is no reason
        valid = np.isfinite(best_contrib) & (best_contrib > 0) & (recs >= 0)
        reason[start:stop] = np.where(valid, chosen, NO_ITEM)
        strength[start:stop] = np.where(valid, best_contrib, 0.0)
    return reason, strength


def _strongest(rows: sp.csr_matrix, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's m largest entries as padded (index, value) matrices (-1 / 0 padding)."""
    nnz = np.diff(rows.indptr)
    r = np.repeat(np.arange(rows.shape[0]), nnz)
    order = np.lexsort((-rows.data, r))  # by row, strongest first
    within = np.arange(len(order)) - np.repeat(rows.indptr[:-1], nnz)
    keep = within < m
    idx = np.full((rows.shape[0], m), -1, dtype=np.int64)
    val = np.zeros((rows.shape[0], m), dtype=np.float32)
    idx[r[keep], within[keep]] = rows.indices[order][keep]
    val[r[keep], within[keep]] = rows.data[order][keep]
    return idx, val


def reason_codes(history_table: pa.Table) -> np.ndarray:
    """For each (user, title) row of the history: what a reason naming it may say.

    A like first, then a rating of ``MIN_REASON_RATING`` stars or more, then a valid
    play; 0 for anything else (watchlist adds, abandoned or too-short plays).
    """

    def flag(name: str) -> np.ndarray:
        return np.asarray(pc.fill_null(history_table[name], False).to_numpy(), dtype=bool)

    rating = np.asarray(
        pc.fill_null(history_table["rating"].cast(pa.int64()), 0).to_numpy(), dtype=np.int64
    )
    watched = np.asarray(pc.fill_null(history_table["valid_play_count"], 0).to_numpy()) > 0
    return np.select(
        [flag("is_liked"), rating >= MIN_REASON_RATING, watched],
        [LIKED, RATED + rating, WATCHED],
        0,
    ).astype(np.int64)


def reason_text(code: np.ndarray, title_name: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(reason_kind, reason) for reasons naming ``title_name``; null where code is 0."""
    named = code > 0
    kind_index = np.select([code == WATCHED, code == LIKED], [0, 1], 2)
    kind = pa.array(np.asarray(REASON_KINDS, dtype=object)[kind_index], mask=~named)
    stars = np.where(code >= RATED, code - RATED, 0)
    suffix = pa.array(np.array(["", *(f" {k}/5" for k in range(1, 6))], dtype=object)[stars])
    text = pc.binary_join_element_wise("Because you ", kind, " ", title_name, suffix, "")
    return kind, text


def _values_at(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """m[rows[k], cols[k]] for every k, as int64 (vectorised; empty for no pairs)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(m[rows, cols]).ravel().astype(np.int64)


def warm_recommendations(
    artifact: Artifact,
    history_table: pa.Table,
    users: np.ndarray,
    catalog: pa.Table,
    n: int = 50,
) -> tuple[pa.Table, np.ndarray]:
    """The model's top-n for users with positive evidence; returns them and the cold users."""
    model = artifact.model
    titles = artifact.title_ids
    data = ia.build(history_table, titles, user_ids=users)
    positives = positive_part(data.matrix)
    warm = np.flatnonzero(np.diff(positives.indptr) > 0)
    if model.kind == "bpr":
        rows = ia.lookup(artifact.user_ids, users[warm])
        warm, rows = warm[rows >= 0], rows[rows >= 0]
    else:
        rows = None
    cold = np.setdiff1d(np.arange(len(users)), warm)

    # titles the model knows that are no longer in the catalog, or unavailable
    cat_ids = np.asarray(catalog["title_id"].to_numpy(zero_copy_only=False), dtype=object)
    cat_order = np.argsort(cat_ids)
    cat_ids = cat_ids[cat_order]
    available = np.asarray(catalog["is_available"].to_numpy(zero_copy_only=False), bool)
    pos = ia.lookup(cat_ids, titles)
    ok = (pos >= 0) & available[cat_order][np.maximum(pos, 0)]
    blocked = np.flatnonzero(~ok).astype(np.int32)

    ids, scores = model.recommend(
        data.matrix[warm], data.exclude[warm], n=n, rows=rows, filter_items=blocked
    )
    # only titles the user watched, liked or rated well may be named
    codes = ia.to_matrix(
        ia.lookup(users, np.asarray(history_table["user_id"].to_numpy(zero_copy_only=False))),
        ia.lookup(titles, np.asarray(history_table["title_id"].to_numpy(zero_copy_only=False))),
        reason_codes(history_table).astype(np.float32),
        positives.shape,
    )[warm]
    nameable = sp.csr_matrix(positives[warm].multiply(codes > 0))
    reason, _ = explain(model, nameable, ids)

    names = np.asarray(catalog["title_name"].to_numpy(zero_copy_only=False), dtype=object)
    names = names[cat_order]
    keep = ids >= 0
    w_row = np.repeat(np.arange(len(warm)), ids.shape[1]).reshape(ids.shape)[keep]
    u_idx = warm[w_row]
    rank = np.tile(np.arange(1, ids.shape[1] + 1), (len(warm), 1))[keep]
    rec = ids[keep]
    why = reason[keep]
    why_pos = ia.lookup(cat_ids, titles[np.maximum(why, 0)])
    code = np.where((why >= 0) & (why_pos >= 0), _values_at(codes, w_row, np.maximum(why, 0)), 0)
    named = code > 0
    why_title = pa.array(titles[np.maximum(why, 0)].astype(str), mask=~named)
    why_name = pa.array(names[np.maximum(why_pos, 0)].astype(str), mask=~named)
    kind, text = reason_text(code, why_name)
    text = pc.coalesce(text, pa.scalar("Recommended for you"))
    table = pa.table(
        {
            "user_id": pa.array(users[u_idx].astype(str)),
            "rank": pa.array(rank.astype(np.int32)),
            "title_id": pa.array(titles[rec].astype(str)),
            "score": pa.array(scores[keep].astype(np.float32)),
            "reason": text,
            "reason_title_id": why_title,
            "reason_kind": kind,
            "source": pa.array(np.full(len(rec), "model", dtype=object), type=pa.string()),
            "model_version": pa.array(
                np.full(len(rec), artifact.version, dtype=object), type=pa.string()
            ),
        }
    )
    return table, users[cold]


COLD_START_SQL = """
with

cold as (

    select user_id from cold_users

),

titles as (

    select title_id, category, coalesce(category_name, category) as category_name
    from marts.titles
    where is_available

),

-- what the cold users looked at: title clicks and expressed interests
browsed as (

    {browsed_clicks}
    select interests.user_id, titles.category, 1.0 as weight
    from marts.user_title_interests as interests
    inner join cold on interests.user_id = cold.user_id
    inner join titles on interests.title_id = titles.title_id
    where not interests.is_disliked

),

category_share as (

    select user_id, category, sum(weight) / sum(sum(weight)) over (partition by user_id) as share
    from browsed
    group by user_id, category

),

popularity as (

    select plays.title_id, count(distinct plays.user_id) as viewers
    from marts.plays as plays
    where plays.is_valid_play and plays.started_at >= $since
    group by plays.title_id

),

ranked as (

    select
        titles.title_id,
        titles.category,
        titles.category_name,
        coalesce(popularity.viewers, 0) / greatest(max(popularity.viewers) over (), 1)
            as popularity,
        row_number() over (
            partition by titles.category
            order by coalesce(popularity.viewers, 0) desc, titles.title_id
        ) as category_rank,
        row_number() over (
            order by coalesce(popularity.viewers, 0) desc, titles.title_id
        ) as global_rank
    from titles
    left join popularity on titles.title_id = popularity.title_id

),

candidates as (

    select
        category_share.user_id,
        ranked.title_id,
        -- browsed categories first, in proportion to how much they were browsed
        1.0 + category_share.share * ranked.popularity as score,
        'Popular in ' || ranked.category_name as reason,
        'cold_start_category' as source
    from category_share
    inner join ranked on category_share.category = ranked.category
    where ranked.category_rank <= $n

    union all

    select
        cold.user_id,
        ranked.title_id,
        ranked.popularity as score,
        'Popular right now' as reason,
        'cold_start_global' as source
    from cold
    cross join ranked
    where ranked.global_rank <= $n

),

allowed as (

    select candidates.*
    from candidates
    anti join excluded
        on candidates.user_id = excluded.user_id and candidates.title_id = excluded.title_id

),

best as (

    select
        *,
        row_number() over (partition by user_id, title_id order by score desc) as copy
    from allowed

),

final as (

    select
        user_id,
        cast(row_number() over (
            partition by user_id order by score desc, title_id
        ) as integer) as rank,
        title_id,
        cast(score as float) as score,
        reason,
        cast(null as varchar) as reason_title_id,
        cast(null as varchar) as reason_kind,
        source,
        'cold_start' as model_version
    from best
    where copy = 1

)

select * from final where rank <= $n order by user_id, rank
"""

CLICKS_SQL = """
    select clicks.user_id, titles.category, 1.0 as weight
    from staging.stg_navigation_events as clicks
    inner join cold on clicks.user_id = cold.user_id
    inner join titles on clicks.title_id = titles.title_id
    where clicks.event_type = 'title_click'
    union all
"""


def cold_start(
    con: duckdb.DuckDBPyConnection,
    cold_users: np.ndarray,
    excluded: pa.Table,
    as_of: datetime,
    n: int = 50,
    trend_days: int = 14,
    use_clicks: bool = True,
) -> pa.Table:
    """Category popularity of what the users browsed, then global popularity.

    excluded: (user_id, title_id) pairs never to recommend. use_clicks reads title
    clicks from staging.stg_navigation_events (no mart carries browsing yet).
    """
    sql = COLD_START_SQL.format(browsed_clicks=CLICKS_SQL if use_clicks else "")
    con.register("cold_users", pa.table({"user_id": pa.array(cold_users.astype(str))}))
    con.register("excluded", excluded.select(["user_id", "title_id"]))
    try:
        return con.sql(
            sql, params={"n": n, "since": as_of - timedelta(days=trend_days)}
        ).to_arrow_table()
    finally:
        con.unregister("cold_users")
        con.unregister("excluded")
