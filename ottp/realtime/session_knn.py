"""V-SKNN: session-based k nearest neighbours over recent sessions (numpy/scipy).

The method of Ludewig & Jannach (2018, "Evaluation of session-based recommendation
algorithms", the V-SKNN variant), written here from its description:

- the current session is a vector over titles in which each title weighs by its
  position, with linear decay: the most recent of n titles weighs 1, the one before
  (n-1)/n, ..., the first 1/n (a title seen twice keeps its latest position);
- candidate neighbours are past sessions sharing at least one title with it; of
  those, only the ``sample`` most recent are considered (the index keeps each
  title's sessions most recent first, so this is a prefix of each title's list);
- the similarity of a neighbour is the dot product of the decayed current vector
  with the neighbour's binary vector, each shared title also weighted by an IDF-like
  factor log(sessions / sessions containing the title), so that a shared niche
  title says more than a shared blockbuster;
- the ``k`` most similar neighbours vote: a title's score is the sum of the
  similarities of the neighbours that contain it.

:class:`SessionIndex` holds the arrays (sessions x titles CSR, the inverted
title -> sessions lists sorted by recency, the session times and the IDF weights);
:meth:`SessionIndex.scores` answers one request with work proportional to the
sampled sessions, never to the whole index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

DEFAULT_SAMPLE = 500
DEFAULT_K = 100
MAX_SESSION_ITEMS = 10  # only the most recent titles of the current session count


@dataclass(frozen=True)
class SessionIndex:
    """Recent sessions as title sets, with the inverted lists V-SKNN samples from."""

    indptr: np.ndarray  # sessions x titles CSR (binary)
    indices: np.ndarray
    last_at: np.ndarray  # per session, its latest interaction (epoch seconds)
    item_indptr: np.ndarray  # titles -> sessions, each list most recent first
    item_sessions: np.ndarray
    idf: np.ndarray  # per title

    @property
    def n_sessions(self) -> int:
        return len(self.last_at)

    @property
    def n_items(self) -> int:
        return len(self.idf)

    def arrays(self, prefix: str = "sessions_") -> dict[str, np.ndarray]:
        return {
            f"{prefix}indptr": self.indptr,
            f"{prefix}indices": self.indices,
            f"{prefix}last_at": self.last_at,
            f"{prefix}item_indptr": self.item_indptr,
            f"{prefix}item_sessions": self.item_sessions,
            f"{prefix}idf": self.idf,
        }

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "sessions_") -> SessionIndex:
        return cls(
            indptr=np.asarray(arrays[f"{prefix}indptr"], dtype=np.int64),
            indices=np.asarray(arrays[f"{prefix}indices"], dtype=np.int32),
            last_at=np.asarray(arrays[f"{prefix}last_at"], dtype=np.float64),
            item_indptr=np.asarray(arrays[f"{prefix}item_indptr"], dtype=np.int64),
            item_sessions=np.asarray(arrays[f"{prefix}item_sessions"], dtype=np.int32),
            idf=np.asarray(arrays[f"{prefix}idf"], dtype=np.float32),
        )

    # ------------------------------------------------------------------ scoring

    def scores(
        self,
        session_items: np.ndarray,
        sample: int = DEFAULT_SAMPLE,
        k: int = DEFAULT_K,
    ) -> tuple[np.ndarray, np.ndarray]:
        """V-SKNN scores for the current session (title indices, oldest first).

        Returns (titles, scores) for every title some neighbour holds, the session's
        own titles included (the caller filters); empty arrays when nothing matches.
        """
        items = _latest_positions(np.asarray(session_items, dtype=np.int64), self.n_items)
        if len(items) == 0 or self.n_sessions == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        weights = np.arange(1, len(items) + 1, dtype=np.float32) / len(items)
        starts = self.item_indptr[items]
        stops = np.minimum(self.item_indptr[items + 1], starts + sample)
        candidates = np.unique(self.item_sessions[ranges(starts, stops)])
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if len(candidates) > sample:
            recent = np.argpartition(-self.last_at[candidates], sample - 1)[:sample]
            candidates = np.sort(candidates[recent])
        query = np.zeros(self.n_items, dtype=np.float32)
        query[items] = weights * self.idf[items]
        # the candidates' titles, concatenated; sim = sum of the query over each session
        lo, hi = self.indptr[candidates], self.indptr[candidates + 1]
        titles = self.indices[ranges(lo, hi)]
        owner = np.repeat(np.arange(len(candidates)), hi - lo)
        sim = np.bincount(owner, weights=query[titles], minlength=len(candidates))
        if len(sim) > k:
            top = np.zeros(len(sim), dtype=bool)
            top[np.argpartition(-sim, k - 1)[:k]] = True
            keep = top[owner]
            titles, owner = titles[keep], owner[keep]
        votes = sim[owner]
        ids, inverse = np.unique(titles, return_inverse=True)
        return ids.astype(np.int64), np.bincount(inverse, weights=votes).astype(np.float32)


def ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenated np.arange(start, stop) for every pair, vectorised."""
    lengths = np.maximum(stops - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total) + np.repeat(starts - ends + lengths, lengths)


def _latest_positions(items: np.ndarray, n_items: int) -> np.ndarray:
    """The session's distinct known titles in order of their latest occurrence (last
    MAX_SESSION_ITEMS of them)."""
    items = items[(items >= 0) & (items < n_items)]
    if len(items) == 0:
        return items
    reversed_items = items[::-1]
    _, first_in_reversed = np.unique(reversed_items, return_index=True)
    keep = np.sort(len(items) - 1 - first_in_reversed)
    return items[keep][-MAX_SESSION_ITEMS:]


def build_session_index(
    session: np.ndarray, item: np.ndarray, at: np.ndarray, n_items: int
) -> SessionIndex:
    """A SessionIndex from (session key, title index, epoch seconds) rows, any order.

    session: any integer key per row (distinct sessions get distinct keys).
    """
    session = np.asarray(session)
    item = np.asarray(item, dtype=np.int64)
    at = np.asarray(at, dtype=np.float64)
    if len(session) == 0:
        zeros = np.zeros(n_items + 1, dtype=np.int64)
        return SessionIndex(
            np.zeros(1, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0),
            zeros,
            np.zeros(0, np.int32),
            np.zeros(n_items, np.float32),
        )
    keys, row = np.unique(session, return_inverse=True)
    n_sessions = len(keys)
    last_at = np.full(n_sessions, -np.inf)
    np.maximum.at(last_at, row, at)
    m = sp.csr_matrix(
        (np.ones(len(row), dtype=np.float32), (row, item)), shape=(n_sessions, n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    df = np.diff(m.tocsc().indptr)
    idf = np.log(n_sessions / np.maximum(df, 1)).astype(np.float32) + np.float32(1e-3)
    # inverted lists, most recent session first
    coo = m.tocoo()
    order = np.lexsort((-last_at[coo.row], coo.col))
    item_indptr = np.concatenate([[0], np.cumsum(np.bincount(coo.col, minlength=n_items))])
    return SessionIndex(
        indptr=m.indptr.astype(np.int64),
        indices=m.indices.astype(np.int32),
        last_at=last_at,
        item_indptr=item_indptr.astype(np.int64),
        item_sessions=coo.row[order].astype(np.int32),
        idf=idf,
    )
