"""The event streams the session benchmark replays: MovieLens ratings or the warehouse's plays.

A :class:`Dataset` is one time-ordered stream of (user, title, time, session) events
with what the live state would know of each (share watched, complete, valid play,
stars), the title facts (next episode, availability, names) and a function that
builds the batch training matrix from everything before a cut-off time:

- MovieLens (``ratings.csv`` of ml-latest-small / ml-25m, or ``u.data`` of ml-100k):
  every rating is a watched title (complete; a valid play), ordered by time per user
  (ties by movie id); a session is a run of ratings less than :data:`SESSION_GAP_S`
  apart; the training matrix is binary (every rating counts 1), as in
  ``ml.movielens``;
- the warehouse (the simulated demo data: ``ottp demo``): ``marts.plays`` (every play
  of a known user, its session, share watched, complete and valid flags) and
  ``marts.titles``; the training matrix is the project's training interactions
  (``ml.interactions``, graded values, decay, exclusions) cut at that time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml import interactions as ia

SESSION_GAP_S = 1800.0
RATINGS_FILES = ("ratings.csv", "u.data")


@dataclass
class TrainingMatrix:
    user_ids: np.ndarray  # str, sorted
    matrix: sp.csr_matrix  # users x titles, signed values
    exclude: sp.csr_matrix  # users x titles, 1 = never recommend


@dataclass
class Dataset:
    name: str
    source: str
    title_ids: np.ndarray  # str (object), sorted
    user: np.ndarray  # str (object) per event; events sorted by (user, at)
    item: np.ndarray  # title index per event
    at: np.ndarray  # epoch seconds
    session: np.ndarray  # session key per event (str)
    pct: np.ndarray  # share watched (0..1)
    complete: np.ndarray  # bool
    valid: np.ndarray  # bool: a valid play (a replay target when the title changes)
    stars: np.ndarray  # float, NaN where no rating
    next_episode: np.ndarray  # title index, -1 none
    available: np.ndarray  # bool per title
    title_names: np.ndarray  # str per title
    training: Callable[[float], TrainingMatrix]
    session_days: float | None  # sessions in the V-SKNN index (None: all)

    @property
    def n_titles(self) -> int:
        return len(self.title_ids)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "events": int(len(self.item)),
            "users": int(len(np.unique(self.user))) if len(self.user) else 0,
            "titles": int(self.n_titles),
            "sessions": int(len(np.unique(self.session))) if len(self.session) else 0,
            "first_at": _iso(self.at.min()) if len(self.at) else None,
            "last_at": _iso(self.at.max()) if len(self.at) else None,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- MovieLens


def ratings_file(path: Path) -> Path:
    """The ratings file at path (a file, or a folder holding ratings.csv or u.data)."""
    path = Path(path)
    if path.is_dir():
        for name in RATINGS_FILES:
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no ratings.csv (ml-latest-small, ml-25m) or u.data")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _read_ratings(path: Path) -> pd.DataFrame:
    cols = ["user", "item", "rating", "ts"]
    try:
        if path.name == "u.data" or path.suffix == ".data":
            df = pd.read_csv(path, sep="\t", header=None, names=cols)
        else:
            df = pd.read_csv(path).rename(
                columns={"userId": "user", "movieId": "item", "timestamp": "ts"}
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a ratings file ({e})") from e
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: columns {missing} missing; expected userId,movieId,rating,timestamp "
            "(ratings.csv) or user, item, rating, timestamp tab-separated (u.data)"
        )
    df = df[cols]
    numeric = df.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path}: {int(bad.sum())} malformed rows (first: data row {row + 1}: "
            f"{df.iloc[row].tolist()}); every field must be a number"
        )
    if len(numeric) == 0:
        raise ValueError(f"{path}: no ratings")
    return numeric


def load_movielens(path: Path) -> Dataset:
    file = ratings_file(path)
    df = _read_ratings(file)
    user_raw = df["user"].to_numpy(np.int64)
    item_raw = df["item"].to_numpy(np.int64)
    ts = df["ts"].to_numpy(np.float64)
    order = np.lexsort((item_raw, ts, user_raw))
    user_raw, item_raw, ts = user_raw[order], item_raw[order], ts[order]
    stars = df["rating"].to_numpy(np.float64)[order]
    movies, item = np.unique(item_raw, return_inverse=True)
    user = user_raw.astype(str).astype(object)
    new_session = np.r_[True, (user_raw[1:] != user_raw[:-1]) | (np.diff(ts) > SESSION_GAP_S)]
    session = np.cumsum(new_session).astype(str).astype(object)
    title_ids = np.sort(movies.astype(str).astype(object))
    # titles sorted as strings: remap the indices
    remap = ia.lookup(title_ids, movies.astype(str).astype(object))
    item = remap[item]
    n = len(title_ids)

    def training(end_at: float) -> TrainingMatrix:
        keep = ts < end_at
        users = np.unique(user[keep]) if keep.any() else np.array([], dtype=object)
        rows = ia.lookup(users, user[keep])
        m = ia.to_matrix(rows, item[keep], np.ones(int(keep.sum()), np.float32), (len(users), n))
        m.data[:] = 1.0
        return TrainingMatrix(users, m, m.copy())

    return Dataset(
        name="movielens",
        source=str(file),
        title_ids=title_ids,
        user=user,
        item=item.astype(np.int64),
        at=ts,
        session=session,
        pct=np.ones(len(ts), np.float32),
        complete=np.ones(len(ts), bool),
        valid=np.ones(len(ts), bool),
        stars=stars,
        next_episode=np.full(n, -1, np.int64),
        available=np.ones(n, bool),
        title_names=np.full(n, "", dtype=object),
        training=training,
        session_days=None,
    )


# ---------------------------------------------------------------------- warehouse

PLAYS_SQL = """
select
    user_id, session_id, title_id, epoch(started_at) as at,
    coalesce(furthest_pct, 0) as pct, coalesce(is_complete, false) as complete,
    coalesce(is_valid_play, false) as valid
from marts.plays
where user_id is not null and session_id is not null and started_at is not null
order by user_id, started_at, playback_id
"""
TITLES_SQL = """
select title_id, coalesce(title_name, '') as title_name,
    coalesce(next_episode_title_id, '') as next_episode_title_id,
    coalesce(is_available, false) as is_available
from marts.titles order by title_id
"""


def load_warehouse(path: Path) -> Dataset:
    """The plays of the warehouse file at path (read-only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no warehouse; build the simulated demo data first (`ottp demo`), "
            "or pass a MovieLens ratings file"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:  # not a DuckDB file, or a writer holds it
        raise ValueError(f"{path}: cannot open the warehouse read-only ({e})") from e
    try:
        plays = con.sql(PLAYS_SQL).df()
        titles = con.sql(TITLES_SQL).df()
    except duckdb.Error as e:
        con.close()
        raise ValueError(f"{path}: no marts.plays / marts.titles to read ({e})") from e
    title_ids = titles["title_id"].to_numpy().astype(str).astype(object)
    item = ia.lookup(title_ids, plays["title_id"].to_numpy().astype(str).astype(object))
    ok = item >= 0
    nxt = ia.lookup(
        title_ids, titles["next_episode_title_id"].to_numpy().astype(str).astype(object)
    )

    def training(end_at: float) -> TrainingMatrix:
        end = datetime.fromtimestamp(end_at, UTC).replace(tzinfo=None)
        data = ia.build(ia.interactions(con, end), title_ids)
        return TrainingMatrix(data.user_ids, data.matrix, data.exclude)

    return Dataset(
        name="simulated",
        source=str(path),
        title_ids=title_ids,
        user=plays["user_id"].to_numpy().astype(str).astype(object)[ok],
        item=item[ok],
        at=plays["at"].to_numpy(np.float64)[ok],
        session=plays["session_id"].to_numpy().astype(str).astype(object)[ok],
        pct=np.clip(plays["pct"].to_numpy(np.float32)[ok], 0, 1),
        complete=plays["complete"].to_numpy(bool)[ok],
        valid=plays["valid"].to_numpy(bool)[ok],
        stars=np.full(int(ok.sum()), np.nan),
        next_episode=nxt,
        available=titles["is_available"].to_numpy(bool),
        title_names=titles["title_name"].to_numpy().astype(str).astype(object),
        training=training,
        session_days=30.0,
    )
