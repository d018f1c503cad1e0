"""What each play slot watches (private): every person's queue of series (tracks), how far
they get in each series, and the movies they pick for the other slots.

Choices follow the person's category and sub-genre preferences and the titles'
popularity, among titles available on the day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import (
    MS_PER_DAY,
    NEVER,
    choice_rows,
    cumcount,
    first_from_keys,
    seg_cummin,
    seg_cumsum,
)
from ottp.simulator.catalog import Catalog
from ottp.simulator.genres import N_CLUSTERS
from ottp.simulator.sessions import Sessions
from ottp.simulator.viewers import Users

TRACK_QUEUE = 10  # series each user may get into during the window


class GroupSampler:
    """Popularity-weighted draws of titles within (category, cluster) groups."""

    def __init__(self, titles: np.ndarray, group: np.ndarray, weight: np.ndarray, n_groups: int):
        order = np.lexsort((titles, group))
        self.titles = titles[order]
        g = group[order]
        w = weight[order].astype(np.float64)
        counts = np.bincount(g, minlength=n_groups)
        self.offsets = np.zeros(n_groups + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum(counts)
        first = first_from_keys(g) if len(g) else g
        cw = seg_cumsum(w, first)
        tot = np.zeros(n_groups)
        np.add.at(tot, g, w)
        self.keys = g + cw / tot[g]
        self.keys[np.r_[self.offsets[1:] - 1][counts > 0]] = np.flatnonzero(counts > 0) + 1.0
        self.counts = counts

    def draw(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        u = rng.random(len(group)) * 0.999999
        i = np.searchsorted(self.keys, group + u, side="right")
        return self.titles[np.minimum(i, len(self.titles) - 1)]


def _restricted_cum(p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise cumulative weights of ``p`` restricted to ``mask`` (all of ``p`` if empty)."""
    w = p * mask
    s = w.sum(-1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1), p)
    cum = np.cumsum(w, axis=-1)
    cum[..., -1] = 1.0
    return cum


@dataclass
class Tracks:
    """Each person's queue of series, rows grouped by person in queue order."""

    series: np.ndarray
    c0: np.ndarray  # episodes already watched before the window
    budget: np.ndarray  # episodes the person will watch at most in the window
    start: np.ndarray  # per person: first row of their queue
    count: np.ndarray  # per person: length of their queue


@dataclass
class PlaySlots:
    """One row per play a session holds, in session order."""

    sess: np.ndarray
    user: np.ndarray
    day: np.ndarray  # UTC day the session was planned on
    track: np.ndarray  # series track the slot draws from, -1: a movie
    title: np.ndarray  # filled by series_titles, then movie_titles

    @property
    def n(self) -> int:
        return len(self.sess)


def build_tracks(rng: np.random.Generator, users: Users, catalog: Catalog) -> Tracks:
    """Each person's series queue, drawn from their preferences (each series once)."""
    C, K = len(catalog.categories), N_CLUSTERS
    has_series_ck = np.zeros((C, K), dtype=bool)
    has_series_ck[catalog.s_cat, catalog.s_cluster] = True
    has_series_c = has_series_ck.any(1)
    queue = TRACK_QUEUE if catalog.n_series else 0
    tr_user = np.repeat(np.arange(users.n), queue)
    cum_pref_s = _restricted_cum(users.pref, has_series_c[None, :])
    tr_cat = choice_rows(cum_pref_s, tr_user, rng.random(len(tr_user)))
    cl_cum = _restricted_cum(users.clpref[tr_user, tr_cat], has_series_ck[tr_cat])
    tr_cl = choice_rows(cl_cum, np.arange(len(tr_user)), rng.random(len(tr_user)))
    if catalog.n_series:
        s_sampler = GroupSampler(
            np.arange(catalog.n_series),
            catalog.s_cat.astype(np.int64) * K + catalog.s_cluster,
            catalog.s_pop,
            C * K,
        )
        tr_series = s_sampler.draw(rng, tr_cat * K + tr_cl)
    else:
        tr_series = np.zeros(0, dtype=np.int64)
    # a user follows a series once
    o = np.lexsort((np.arange(len(tr_user)), tr_series, tr_user))
    dup = np.zeros(len(o), dtype=bool)
    dup[1:] = (tr_user[o][1:] == tr_user[o][:-1]) & (tr_series[o][1:] == tr_series[o][:-1])
    keep = np.sort(o[~dup])
    tr_user, tr_series, tr_cat = tr_user[keep], tr_series[keep], tr_cat[keep]
    n_tr = np.bincount(tr_user, minlength=users.n)
    tr_start = np.zeros(users.n, dtype=np.int64)
    tr_start[1:] = np.cumsum(n_tr)[:-1]
    tr_rank = np.arange(len(tr_user)) - tr_start[tr_user]
    a0 = catalog.episodes_released(tr_series, np.zeros(len(tr_series), dtype=np.int64))
    started = (users.signup_day[tr_user] < 0) & (tr_rank < 2) & (rng.random(len(tr_user)) < 0.35)
    tr_c0 = np.where(started, (rng.random(len(tr_user)) * (a0 + 1)).astype(np.int64), 0)
    tr_c0 = np.minimum(tr_c0, a0)
    tr_budget = rng.geometric(1.0 / (3.0 + 45.0 * users.pref[tr_user, tr_cat] ** 1.5))
    return Tracks(series=tr_series, c0=tr_c0, budget=tr_budget, start=tr_start, count=n_tr)


def play_slots(sessions: Sessions) -> PlaySlots:
    p_sess = np.repeat(np.arange(sessions.n), sessions.n_plays)
    return PlaySlots(
        sess=p_sess,
        user=sessions.user[p_sess],
        day=sessions.t0[p_sess] // MS_PER_DAY,  # UTC day; sessions only ever move later
        track=sessions.track[p_sess],
        title=np.full(len(p_sess), -1, dtype=np.int64),
    )


def series_titles(slots: PlaySlots, tracks: Tracks, catalog: Catalog) -> None:
    """Episodes for series slots, in order, as far as released episodes and interest allow.

    Sessions alternate between a person's first two series; when a series runs out
    (finished, caught up with weekly releases, or the person lost interest) the following
    slots move to the next series of the queue. The progress is a capped counter per
    track, n_k = min(n_{k-1} + 1, cap_k).
    """
    p_track, p_user, p_day, p_title = slots.track, slots.user, slots.day, slots.title
    for rnd in range(TRACK_QUEUE):  # rounds over the queue, each one vectorised
        sl = np.flatnonzero(p_track >= 0)
        if len(sl) == 0:
            break
        sl = sl[np.argsort(p_track[sl], kind="stable")]
        trk = p_track[sl]
        first = first_from_keys(trk)
        k = cumcount(first)
        ser = tracks.series[trk]
        c0 = tracks.c0[trk]
        cap = np.minimum(catalog.episodes_released(ser, p_day[sl]), c0 + tracks.budget[trk])
        m = seg_cummin(cap - k, first)
        n_k = np.minimum(c0 + k + 1, m + k)
        is_first = first == np.arange(len(first))
        n_prev = np.empty_like(n_k)
        n_prev[1:] = n_k[:-1]
        n_prev[is_first] = c0[is_first]
        watched = n_k > n_prev
        p_title[sl[watched]] = catalog.s_titles[catalog.s_offsets[ser[watched]] + n_prev[watched]]
        # slots this round could not use move on to the user's next series in the queue
        u_sl = p_user[sl]
        nxt = tracks.start[u_sl] + 2 + rnd
        p_track[sl] = np.where(~watched & (nxt < tracks.start[u_sl] + tracks.count[u_sl]), nxt, -1)


class MoviePicker:
    """Category by preference, sub-genre by taste, title by popularity, among movies on offer."""

    def __init__(self, catalog: Catalog, users: Users):
        C, K = len(catalog.categories), N_CLUSTERS
        movies = np.flatnonzero(catalog.kind == 0)
        has_movie_ck = np.zeros((C, K), dtype=bool)
        has_movie_ck[catalog.cat[movies], catalog.cluster[movies]] = True
        self.sampler = GroupSampler(
            movies,
            catalog.cat[movies].astype(np.int64) * K + catalog.cluster[movies],
            catalog.pop[movies],
            C * K,
        )
        # the category's most popular movie that stays on offer all window
        fallback = np.zeros(C, dtype=np.int64)
        for c in range(C):
            mc = movies[
                (catalog.cat[movies] == c)
                & (catalog.avail_day[movies] < 0)
                & (catalog.removed_day[movies] >= NEVER)
            ]
            fallback[c] = mc[np.argmax(catalog.pop[mc])] if len(mc) else movies[0]
        self.fallback = fallback
        self.has_movie_ck = has_movie_ck
        self.cum_pref = _restricted_cum(users.pref, has_movie_ck.any(1)[None, :])
        self.clpref = users.clpref
        self.catalog = catalog

    def draw(self, rng: np.random.Generator, user: np.ndarray, day: np.ndarray) -> np.ndarray:
        n = len(user)
        c = choice_rows(self.cum_pref, user, rng.random(n))
        cc = _restricted_cum(self.clpref[user, c], self.has_movie_ck[c])
        kk = choice_rows(cc, np.arange(n), rng.random(n))
        g = c * N_CLUSTERS + kk
        t = self.sampler.draw(rng, g)
        for _ in range(6):
            bad = ~self.catalog.available(t, day, margin=2)
            if not bad.any():
                break
            t[bad] = self.sampler.draw(rng, g[bad])
        bad = ~self.catalog.available(t, day, margin=2)
        t[bad] = self.fallback[c[bad]]
        return t


def movie_titles(
    rng: np.random.Generator, slots: PlaySlots, users: Users, catalog: Catalog
) -> None:
    """Movies for every slot the series left empty; people rarely rewatch a movie."""
    picker = MoviePicker(catalog, users)
    p_title, p_user, p_day = slots.title, slots.user, slots.day
    mv = np.flatnonzero(p_title < 0)
    p_title[mv] = picker.draw(rng, p_user[mv], p_day[mv])
    for _ in range(2):  # redraw repeats
        o = np.lexsort((mv, p_title[mv], p_user[mv]))
        rep = np.zeros(len(o), dtype=bool)
        rep[1:] = (p_user[mv][o][1:] == p_user[mv][o][:-1]) & (
            p_title[mv][o][1:] == p_title[mv][o][:-1]
        )
        again = np.sort(mv[o[rep]])
        if len(again) == 0:
            break
        p_title[again] = picker.draw(rng, p_user[again], p_day[again])
