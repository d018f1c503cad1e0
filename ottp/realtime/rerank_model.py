"""The serving model of the live recommendations: plain numpy arrays, no pickles.

:class:`ServingModel` holds everything a live re-ranking request reads, indexed by
one title universe (the promoted model's titles first, in its order, then catalog
titles it never saw):

- the promoted batch model's item arrays (``ml.models.TrainedModel.from_arrays``,
  any kind). A dense item-item model is cut to its :data:`TOP_NEIGHBOURS` strongest
  neighbours per title; for ALS, ``Y^T Y`` is kept so a fold-in costs
  O(history x factors^2);
- each batch user's history row (the signed training values) for the fold-in, and
  the batch top-N candidates per user (``ml.recommendations``);
- "viewers of X watch Y next" transitions (top :data:`TOP_TRANSITIONS` per title,
  scored by confidence), the V-SKNN session index over recent sessions, the next
  episode per title, trending (recency-decayed viewers) and availability.

:func:`build_serving_model` assembles one from arrays (the offline benchmark uses
it); :func:`write_serving_model` reads the warehouse and the model registry and
writes ``serving_model.npz`` + ``serving_model.json`` into a folder;
:func:`load_serving_model` reads them back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

from ml.models import ModelSpec, TrainedModel
from ml.registry import Artifact, Registry
from ottp.realtime.session_knn import SessionIndex, build_session_index

ARRAYS_FILE = "serving_model.npz"
META_FILE = "serving_model.json"
TOP_NEIGHBOURS = 200  # per title, for item-item models
TOP_TRANSITIONS = 50  # per title
TOP_SIMILAR = 20  # per title, the model's nearest titles kept as candidates
SIMILAR_BLOCK = 1024  # titles scored at once when computing them
SESSION_DAYS = 30  # sessions kept in the V-SKNN index (before the marts' as_of)
TREND_HALF_LIFE_DAYS = 7.0
TRANSITION_WINDOW_HOURS = 24.0  # as the mart's next_up_window_hours (benchmark builds)
N_CANDIDATES = 100  # batch candidates per user kept


@dataclass
class ServingModel:
    version: str
    spec: ModelSpec
    title_ids: np.ndarray  # str, the title universe
    title_names: np.ndarray  # str ('' where unknown)
    series_names: np.ndarray  # str ('' for titles outside a series)
    available: np.ndarray  # bool
    next_episode: np.ndarray  # int32 title index, -1 none
    trending: np.ndarray  # float32, max 1
    model: TrainedModel  # item arrays only (no user factors)
    user_ids: np.ndarray  # str, batch users (sorted)
    history: sp.csr_matrix  # users x titles, the signed training values
    exclude: sp.csr_matrix  # users x titles, 1 = never recommend (watched, completed, disliked)
    candidates: sp.csr_matrix  # users x titles, batch scores of the top-N
    transitions: sp.csr_matrix  # titles x titles, confidence
    similar: sp.csr_matrix  # titles x titles, the model's nearest titles (candidates)
    sessions: SessionIndex
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_titles(self) -> int:
        return len(self.title_ids)

    @cached_property
    def title_index(self) -> dict[str, int]:
        return {str(t): i for i, t in enumerate(self.title_ids)}

    @cached_property
    def display_names(self) -> dict[str, str | None]:
        """title_id -> its catalog name (None where the catalog names it not)."""
        return {
            str(t): str(n) or None for t, n in zip(self.title_ids, self.title_names, strict=True)
        }

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def yty(self) -> np.ndarray | None:
        f = self.model.item_factors
        return None if f is None else (f.T.astype(np.float64) @ f.astype(np.float64))

    @cached_property
    def fold_in_base(self) -> np.ndarray | None:
        """ALS: ``Y^T Y + regularization I``, the part of every fold-in's system that does
        not depend on the history."""
        if self.yty is None or self.spec.kind != "als":
            return None
        reg = float(self.spec.params["regularization"])
        return self.yty + reg * np.eye(self.yty.shape[0])

    @cached_property
    def unit_factors(self) -> np.ndarray | None:
        f = self.model.item_factors
        if f is None:
            return None
        norms = np.linalg.norm(f, axis=1)
        norms[norms == 0] = 1.0
        return (f / norms[:, None]).astype(np.float32)

    @cached_property
    def trending_order(self) -> np.ndarray:
        """Available titles by trending score, best first (ties: by index)."""
        idx = np.flatnonzero(self.available)
        return idx[np.lexsort((idx, -self.trending[idx]))]

    def warm(self) -> ServingModel:
        """Compute the lookups requests read (id and name maps, YtY, unit factors,
        trending order) now rather than in a first request."""
        _ = self.title_index, self.display_names, self.user_index, self.yty, self.fold_in_base
        _ = self.unit_factors, self.trending_order
        return self

    def name(self, i: int) -> str:
        return str(self.title_names[i]) or str(self.title_ids[i])

    # ------------------------------------------------------------------ persistence

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"model_{k}": v for k, v in self.model.arrays().items()}
        if self.model.item_factors is not None:  # arrays() keeps them with user factors only
            out["model_item_factors"] = self.model.item_factors
        out.update(self.sessions.arrays())
        out.update(
            title_ids=np.asarray(self.title_ids, dtype=str),
            title_names=np.asarray(self.title_names, dtype=str),
            series_names=np.asarray(self.series_names, dtype=str),
            available=np.asarray(self.available, dtype=bool),
            next_episode=np.asarray(self.next_episode, dtype=np.int32),
            trending=np.asarray(self.trending, dtype=np.float32),
            user_ids=np.asarray(self.user_ids, dtype=str),
        )
        for name in ("history", "exclude", "candidates", "transitions", "similar"):
            m: sp.csr_matrix = getattr(self, name)
            out.update(
                {f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr}
            )
        return out

    def row_counts(self) -> dict[str, int]:
        return {
            "titles": int(self.n_titles),
            "available_titles": int(self.available.sum()),
            "users": int(len(self.user_ids)),
            "history": int(self.history.nnz),
            "exclude": int(self.exclude.nnz),
            "candidates": int(self.candidates.nnz),
            "transitions": int(self.transitions.nnz),
            "similar": int(self.similar.nnz),
            "sessions": int(self.sessions.n_sessions),
            "session_titles": int(len(self.sessions.indices)),
            "next_episodes": int((self.next_episode >= 0).sum()),
        }


def _csr(arrays, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{name}_data"], arrays[f"{name}_indices"], arrays[f"{name}_indptr"]), shape=shape
    )


def load_serving_model(folder: Path | str) -> ServingModel:
    """Read a folder written by :func:`write_serving_model` (no pickles)."""
    folder = Path(folder)
    meta_path, arrays_path = folder / META_FILE, folder / ARRAYS_FILE
    if not meta_path.exists() or not arrays_path.exists():
        raise FileNotFoundError(f"{folder}: no {META_FILE} and {ARRAYS_FILE} (a serving model)")
    meta = json.loads(meta_path.read_text())
    with np.load(arrays_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    n_titles = len(arrays["title_ids"])
    n_users = len(arrays["user_ids"])
    model_arrays = {k[len("model_") :]: v for k, v in arrays.items() if k.startswith("model_")}
    return ServingModel(
        version=meta["version"],
        spec=ModelSpec.from_dict(meta["model"]),
        title_ids=arrays["title_ids"].astype(object),
        title_names=arrays["title_names"].astype(object),
        series_names=arrays["series_names"].astype(object),
        available=arrays["available"],
        next_episode=arrays["next_episode"],
        trending=arrays["trending"],
        model=TrainedModel.from_arrays(ModelSpec.from_dict(meta["model"]), model_arrays),
        user_ids=arrays["user_ids"].astype(object),
        history=_csr(arrays, "history", (n_users, n_titles)),
        exclude=_csr(arrays, "exclude", (n_users, n_titles)),
        candidates=_csr(arrays, "candidates", (n_users, n_titles)),
        transitions=_csr(arrays, "transitions", (n_titles, n_titles)),
        similar=_csr(arrays, "similar", (n_titles, n_titles)),
        sessions=SessionIndex.from_arrays(arrays),
        info=meta.get("info", {}),
    ).warm()


# ---------------------------------------------------------------------- building


def item_model(model: TrainedModel, n_titles: int, top: int = TOP_NEIGHBOURS) -> TrainedModel:
    """The item side of a trained model over a universe of n_titles (its own titles
    first): no user factors; item-item weights cut to the top neighbours per title."""
    extra = n_titles - model.n_items
    popularity = np.concatenate([model.popularity, np.zeros(extra, np.float32)])
    out = TrainedModel(spec=model.spec, n_items=n_titles, popularity=popularity)
    if model.item_factors is not None:
        f = np.asarray(model.item_factors, dtype=np.float32)
        out.item_factors = np.vstack([f, np.zeros((extra, f.shape[1]), np.float32)])
    if model.similarity is not None:
        s = top_per_row(sp.csr_matrix(model.similarity), top)
        out.similarity = sp.csr_matrix(
            (s.data, s.indices, np.concatenate([s.indptr, np.full(extra, s.indptr[-1])])),
            shape=(n_titles, n_titles),
        )
    return out


def similar_titles(model: TrainedModel, top: int = TOP_SIMILAR) -> sp.csr_matrix:
    """Each title's ``top`` nearest titles: cosine of the item factors (in blocks of
    SIMILAR_BLOCK titles), or the strongest item-item weights; empty for popularity."""
    n = model.n_items
    if model.item_factors is None:
        if model.similarity is None:
            return sp.csr_matrix((n, n), dtype=np.float32)
        s = sp.csr_matrix(model.similarity, dtype=np.float32).tocoo()
        off = (s.row != s.col) & (s.data > 0)  # not its own neighbour; a positive weight
        s = sp.csr_matrix((s.data[off], (s.row[off], s.col[off])), shape=(n, n))
        return top_per_row(s, top)
    f = np.asarray(model.item_factors, dtype=np.float32)
    norms = np.linalg.norm(f, axis=1)
    unit = f / np.where(norms == 0, 1.0, norms)[:, None]
    top = min(top, n - 1)
    if top <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = [], [], []
    for start in range(0, n, SIMILAR_BLOCK):
        block = unit[start : start + SIMILAR_BLOCK] @ unit.T
        own = np.arange(start, start + len(block))
        block[own - start, own] = -np.inf  # not its own neighbour
        best = np.argpartition(-block, top - 1, axis=1)[:, :top]
        rows.append(np.repeat(own, top))
        cols.append(best.ravel())
        vals.append(np.take_along_axis(block, best, axis=1).ravel())
    keep = np.concatenate(vals) > 0
    out = sp.csr_matrix(
        (np.concatenate(vals)[keep], (np.concatenate(rows)[keep], np.concatenate(cols)[keep])),
        shape=(n, n),
        dtype=np.float32,
    )
    out.sort_indices()
    return out


def top_per_row(m: sp.csr_matrix, top: int) -> sp.csr_matrix:
    """Each row's ``top`` largest entries (vectorised)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.eliminate_zeros()
    nnz = np.diff(m.indptr)
    if len(nnz) == 0 or nnz.max(initial=0) <= top:
        return m
    rows = np.repeat(np.arange(m.shape[0]), nnz)
    order = np.lexsort((-m.data, rows))
    within = np.arange(len(order)) - np.repeat(m.indptr[:-1], nnz)
    keep = order[within < top]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)
    out.sort_indices()
    return out


def transitions_from_plays(
    user: np.ndarray,
    item: np.ndarray,
    started: np.ndarray,
    n_items: int,
    session: np.ndarray | None = None,
    window_s: float = TRANSITION_WINDOW_HOURS * 3600,
    top: int = TOP_TRANSITIONS,
) -> sp.csr_matrix:
    """Viewers of X watch Y next: per user, each play paired with the user's next play
    of another title in the same session or within window_s; confidence per X."""
    user, item = np.asarray(user), np.asarray(item, dtype=np.int64)
    started = np.asarray(started, dtype=np.float64)
    order = np.lexsort((started, user))
    user, item, started = user[order], item[order], started[order]
    same_user = user[1:] == user[:-1]
    near = started[1:] - started[:-1] <= window_s
    if session is not None:
        s = np.asarray(session)[order]
        near |= s[1:] == s[:-1]
    keep = same_user & near & (item[1:] != item[:-1])
    counts = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (item[:-1][keep], item[1:][keep])),
        shape=(n_items, n_items),
    )
    counts.sum_duplicates()
    return confidence(counts, top)


def confidence(counts: sp.csr_matrix, top: int = TOP_TRANSITIONS) -> sp.csr_matrix:
    """Transition counts -> share of X's transitions going to Y, top per X."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.diags(1.0 / np.maximum(totals, 1.0)) @ counts
    return top_per_row(sp.csr_matrix(scaled, dtype=np.float32), top)


def trending_scores(
    item: np.ndarray, at: np.ndarray, as_of: float, n_items: int, half_life_days: float
) -> np.ndarray:
    """Recency-decayed play counts per title, scaled to max 1."""
    age_days = np.maximum(as_of - np.asarray(at, dtype=np.float64), 0) / 86400.0
    w = np.power(0.5, age_days / half_life_days)
    score = np.bincount(np.asarray(item, dtype=np.int64), weights=w, minlength=n_items)
    top = score.max(initial=0.0)
    return (score / top if top > 0 else score).astype(np.float32)


def batch_candidates(
    model: TrainedModel, history: sp.csr_matrix, exclude: sp.csr_matrix, n: int = N_CANDIDATES
) -> sp.csr_matrix:
    """The batch model's top-n per user (folded-in ALS), as a users x titles matrix.

    history's rows are the users the model was trained on, in its order (BPR reads
    its trained user factors by row).
    """
    rows = np.arange(history.shape[0]) if model.kind == "bpr" else None
    ids, scores = model.recommend(history, exclude, n=n, rows=rows)
    keep = ids >= 0
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1]).reshape(ids.shape)[keep]
    # batch scores may be negative; a rank-based score keeps them comparable
    rank = np.tile(np.arange(ids.shape[1]), (ids.shape[0], 1))[keep]
    out = sp.csr_matrix(
        (1.0 - rank / max(ids.shape[1], 1), (rows, ids[keep])),
        shape=(history.shape[0], model.n_items),
        dtype=np.float32,
    )
    out.sort_indices()
    return out


def build_serving_model(
    version: str,
    model: TrainedModel,
    title_ids: np.ndarray,
    user_ids: np.ndarray,
    history: sp.csr_matrix,
    candidates: sp.csr_matrix,
    transitions: sp.csr_matrix,
    sessions: SessionIndex,
    trending: np.ndarray,
    exclude: sp.csr_matrix | None = None,
    available: np.ndarray | None = None,
    next_episode: np.ndarray | None = None,
    title_names: np.ndarray | None = None,
    series_names: np.ndarray | None = None,
    info: dict | None = None,
    similar: sp.csr_matrix | None = None,
) -> ServingModel:
    """A ServingModel from arrays on one title universe (model titles first).

    exclude defaults to every title with a positive history value; similar to
    :func:`similar_titles` of the model.
    """
    n = len(title_ids)
    items = item_model(model, n)
    history = sp.csr_matrix(history, dtype=np.float32)
    if exclude is None:
        exclude = sp.csr_matrix(history > 0, dtype=np.float32)
    order = np.argsort(np.asarray(user_ids, dtype=str), kind="stable")
    return ServingModel(
        version=version,
        spec=model.spec,
        title_ids=np.asarray(title_ids, dtype=object),
        title_names=np.asarray(title_names if title_names is not None else [""] * n, dtype=object),
        series_names=np.asarray(
            series_names if series_names is not None else [""] * n, dtype=object
        ),
        available=np.ones(n, bool) if available is None else np.asarray(available, bool),
        next_episode=(
            np.full(n, -1, np.int32) if next_episode is None else np.asarray(next_episode, np.int32)
        ),
        trending=np.asarray(trending, dtype=np.float32),
        model=items,
        user_ids=np.asarray(user_ids, dtype=object)[order],
        history=history[order],
        exclude=sp.csr_matrix(exclude, dtype=np.float32)[order],
        candidates=sp.csr_matrix(candidates, dtype=np.float32)[order],
        transitions=sp.csr_matrix(transitions, dtype=np.float32),
        similar=similar_titles(items) if similar is None else sp.csr_matrix(similar),
        sessions=sessions,
        info=dict(info or {}),
    )


def save_serving_model(model: ServingModel, folder: Path | str) -> dict:
    """Write the arrays and the metadata; returns the files and row counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ARRAYS_FILE}.tmp.npz"
    np.savez(tmp, **model.arrays())
    os.replace(tmp, folder / ARRAYS_FILE)
    rows = model.row_counts()
    meta = {
        "version": model.version,
        "model": model.spec.to_dict(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "info": model.info,
    }
    tmp_meta = folder / f".{META_FILE}.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp_meta, folder / META_FILE)
    return {"version": model.version, "files": [ARRAYS_FILE, META_FILE], "rows": rows}


# ---------------------------------------------------------------------- warehouse


def _column(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> dict:
    t = (
        con.sql(sql, params=params or {}).to_arrow_table()
        if params
        else con.sql(sql).to_arrow_table()
    )
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def _lookup(sorted_ids: np.ndarray, order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index into the universe of each id (-1 if absent); sorted_ids = universe[order]."""
    ids = np.asarray(ids, dtype=object).astype(str)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    return np.where(found, order[pos], -1)


def write_serving_model(
    warehouse_con: duckdb.DuckDBPyConnection, registry_or_ml_dir: Registry | Path | str, folder
) -> dict:
    """Read the marts, ml tables and the promoted model; write the serving model.

    Reads marts.titles, marts.plays (valid plays of the last SESSION_DAYS days before
    the latest play, for sessions and trending), marts.title_transitions,
    ml.training_interactions (history) and ml.recommendations (source 'model').
    """
    reg = (
        registry_or_ml_dir
        if isinstance(registry_or_ml_dir, Registry)
        else Registry(Path(registry_or_ml_dir))
    )
    version = reg.promoted()
    if version is None:
        raise ValueError(f"{reg.root}: no promoted model; train and promote one first")
    artifact: Artifact = reg.load(version)
    con = warehouse_con
    titles = _column(
        con,
        "select title_id, coalesce(title_name, '') as title_name, "
        "coalesce(series_id, '') as series_id, "
        "coalesce(next_episode_title_id, '') as next_episode_title_id, "
        "coalesce(is_available, false) as is_available "
        "from marts.titles order by title_id",
    )
    model_titles = np.asarray(artifact.title_ids, dtype=object).astype(str)
    cat_ids = np.asarray(titles["title_id"], dtype=object).astype(str)
    universe = np.concatenate([model_titles, np.setdiff1d(cat_ids, model_titles)])
    order = np.argsort(universe)
    sorted_u = universe[order]
    n = len(universe)
    cat_pos = _lookup(sorted_u, order, cat_ids)
    available = np.zeros(n, bool)
    available[cat_pos] = np.asarray(titles["is_available"], bool)
    names = np.full(n, "", dtype=object)
    names[cat_pos] = titles["title_name"]
    series = np.full(n, "", dtype=object)
    series[cat_pos] = titles["series_id"]
    next_episode = np.full(n, -1, np.int32)
    has_next = np.asarray(titles["next_episode_title_id"], dtype=object).astype(str) != ""
    next_episode[cat_pos[has_next]] = _lookup(
        sorted_u, order, titles["next_episode_title_id"][has_next]
    )

    hist = _column(
        con, "select user_id, title_id, value, is_excluded from ml.training_interactions"
    )
    users = np.unique(np.asarray(hist["user_id"], dtype=object).astype(str))
    h_rows = np.searchsorted(users, np.asarray(hist["user_id"], dtype=object).astype(str))
    h_cols = _lookup(sorted_u, order, hist["title_id"])
    ok = (h_cols >= 0) & np.isfinite(np.asarray(hist["value"], dtype=np.float64))
    history = sp.csr_matrix(
        (np.asarray(hist["value"], np.float32)[ok], (h_rows[ok], h_cols[ok])), shape=(len(users), n)
    )
    excl = ok & np.asarray(hist["is_excluded"], bool)
    exclude = sp.csr_matrix(
        (np.ones(int(excl.sum()), np.float32), (h_rows[excl], h_cols[excl])), shape=(len(users), n)
    )
    candidates = _warehouse_candidates(con, users, sorted_u, order, n)
    transitions = _warehouse_transitions(con, sorted_u, order, n)
    sessions, trending, as_of = _warehouse_sessions(con, sorted_u, order, n)
    model = build_serving_model(
        version,
        artifact.model,
        universe,
        users,
        history,
        candidates,
        transitions,
        sessions,
        trending,
        exclude=exclude,
        available=available,
        next_episode=next_episode,
        title_names=names,
        series_names=series,
        info={"as_of": as_of, "model_titles": int(len(model_titles))},
    )
    return save_serving_model(model, folder)


def _warehouse_candidates(con, users, sorted_u, order, n) -> sp.csr_matrix:
    rec = _column(
        con,
        f"select user_id, title_id, rank from ml.recommendations "
        f"where source = 'model' and rank <= {N_CANDIDATES}",
    )
    r_user = np.asarray(rec["user_id"], dtype=object).astype(str)
    r_rows = np.clip(np.searchsorted(users, r_user), 0, max(len(users) - 1, 0))
    r_cols = _lookup(sorted_u, order, rec["title_id"])
    ok = (r_cols >= 0) & (len(users) > 0) & (users[r_rows] == r_user if len(users) else False)
    score = 1.0 - (np.asarray(rec["rank"], np.float32) - 1) / N_CANDIDATES
    out = sp.csr_matrix((score[ok], (r_rows[ok], r_cols[ok])), shape=(len(users), n))
    out.sort_indices()
    return out


def _warehouse_transitions(con, sorted_u, order, n) -> sp.csr_matrix:
    tr = _column(
        con,
        f"select from_title_id, to_title_id, confidence from marts.title_transitions "
        f"where next_rank <= {TOP_TRANSITIONS}",
    )
    a = _lookup(sorted_u, order, tr["from_title_id"])
    b = _lookup(sorted_u, order, tr["to_title_id"])
    ok = (a >= 0) & (b >= 0)
    return sp.csr_matrix(
        (np.asarray(tr["confidence"], np.float32)[ok], (a[ok], b[ok])), shape=(n, n)
    )


def _warehouse_sessions(con, sorted_u, order, n) -> tuple[SessionIndex, np.ndarray, str]:
    plays = _column(
        con,
        "with last as (select max(started_at) as at from marts.plays where is_valid_play) "
        "select session_id, title_id, epoch(started_at) as at, epoch(last.at) as as_of "
        "from marts.plays, last where is_valid_play and session_id is not null "
        f"and started_at >= last.at - interval {SESSION_DAYS} day",
    )
    items = _lookup(sorted_u, order, plays["title_id"])
    ok = items >= 0
    at = np.asarray(plays["at"], np.float64)
    as_of = float(plays["as_of"][0]) if len(at) else 0.0
    sessions = build_session_index(
        np.asarray(plays["session_id"], dtype=object).astype(str)[ok], items[ok], at[ok], n
    )
    trending = trending_scores(items[ok], at[ok], as_of, n, TREND_HALF_LIFE_DAYS)
    when = datetime.fromtimestamp(as_of, UTC).isoformat() if len(at) else None
    return sessions, trending, when
