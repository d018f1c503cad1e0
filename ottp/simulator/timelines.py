"""Timelines (private): what happens around each play (navigation before it, interest after
it, the pause before the next one), and where sessions and plays land in the window.

A play block is: navigation, the play itself (its wall-clock length), interest events, a gap.
Offsets are milliseconds from the start of the block; blocks follow the session's header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import MS_PER_DAY, seg_cumsum, uniform_int
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import RATING_MAX, RATING_MIN
from ottp.simulator.playback import Plays
from ottp.simulator.rails import PlayRails
from ottp.simulator.sessions import (
    SESSION_MIN_IDLE_MS,
    Sessions,
    SessionTimes,
    session_durations,
    shift_apart,
)

INTEREST = ("like", "dislike", "rating", "add_to_watchlist", "share")  # in the order they happen


@dataclass
class PlayTimeline:
    """Offsets (ms) inside each play block, and the interest shown after the play."""

    t_pv_home: np.ndarray
    t_pv_search: np.ndarray
    t_search: np.ndarray
    t_imp: np.ndarray
    has_imp: np.ndarray
    t_click: np.ndarray
    pv_title: np.ndarray  # a title page view between the click and the play
    t_pvt: np.ndarray
    t_start: np.ndarray
    interest: np.ndarray  # (plays, len(INTEREST)) flags
    stars: np.ndarray
    post_t: np.ndarray  # (plays, len(INTEREST)) offsets from the play start
    block: np.ndarray  # length of the whole block
    gap_after: np.ndarray


@dataclass
class Placement:
    """Sessions and plays placed in the window (absolute ms)."""

    s_start: np.ndarray
    s_end: np.ndarray
    s_ok: np.ndarray  # starts inside the window
    s_day: np.ndarray  # UTC day of the start, capped at the last day
    pl_t0: np.ndarray  # block start
    pl_ok: np.ndarray
    pl_dev: np.ndarray
    play_start: np.ndarray  # play_start event time


def play_timelines(
    rng: np.random.Generator, plays: Plays, rails: PlayRails, catalog: Catalog
) -> PlayTimeline:
    n, autoplay, pl_cont = plays.n, rails.autoplay, plays.cont
    has_imp = ~autoplay
    t_pv_home = np.zeros(n, dtype=np.int64)  # only when the play is not the first nor autoplay
    t_pv_search = 2000 + uniform_int(rng, 0, 8000, n)
    t_search = t_pv_search + uniform_int(rng, 3000, 12000, n)
    t_imp = np.where(
        rails.search, t_search + uniform_int(rng, 300, 800, n), uniform_int(rng, 500, 2000, n)
    )
    browse_ms = np.where(pl_cont, uniform_int(rng, 2000, 8000, n), uniform_int(rng, 3000, 40000, n))
    t_click = np.where(autoplay, 0, t_imp + browse_ms)
    pv_title = ~autoplay & ~pl_cont
    t_pvt = t_click + uniform_int(rng, 500, 2000, n)
    t_start = np.where(
        pv_title,
        t_pvt + uniform_int(rng, 2000, 15000, n),
        t_click + uniform_int(rng, 500, 3000, n),
    )
    interest, stars = _interest(rng, plays, catalog)
    post_step = uniform_int(rng, 2000, 9000, n * 5).reshape(n, 5) * interest
    wall = plays.out["wall_ms"]
    post_t = wall[:, None] + np.cumsum(post_step, axis=1)
    post_len = post_step.sum(1) + 1000
    gap_after = np.where(
        np.r_[autoplay[1:], False],
        uniform_int(rng, 3000, 12000, n),
        uniform_int(rng, 2000, 60000, n),
    )
    return PlayTimeline(
        t_pv_home=t_pv_home,
        t_pv_search=t_pv_search,
        t_search=t_search,
        t_imp=t_imp,
        has_imp=has_imp,
        t_click=t_click,
        pv_title=pv_title,
        t_pvt=t_pvt,
        t_start=t_start,
        interest=interest,
        stars=stars,
        post_t=post_t,
        block=t_start + wall + post_len + gap_after,
        gap_after=gap_after,
    )


def _interest(rng: np.random.Generator, plays: Plays, catalog: Catalog):
    """Likes, dislikes, ratings (and their stars), watchlist adds and shares after a play."""
    n, pl, pl_title = plays.n, plays.out, plays.title
    ended = ~pl["killed"] & ~pl["interrupted"]
    pct = pl["end"] / catalog.duration[pl_title]
    fin = pl["fin"]
    q = catalog.quality[pl_title]
    ri = rng.random(n)
    p_like = 0.015 + 0.22 * fin + 0.05 * pct + 0.05 * q
    p_dis = np.where(pct < 0.3, 0.16 * (1 - pct / 0.3), 0.0) + 0.002
    like = ended & (ri < p_like)
    dislike = ended & ~like & (ri < p_like + p_dis)
    rate = ended & (rng.random(n) < 0.05 + 0.06 * fin + 0.04 * (pct < 0.2))
    lo, span = RATING_MIN, RATING_MAX - RATING_MIN
    stars = np.round(lo + span * pct**0.8 + rng.normal(0, 0.6, n) + q)
    stars = np.clip(stars, RATING_MIN, RATING_MAX).astype(np.int64)
    watch = ended & (rng.random(n) < 0.015)
    share = ended & (rng.random(n) < 0.003 + 0.02 * fin)
    return np.stack([like, dislike, rate, watch, share], axis=1), stars


def place(
    sessions: Sessions,
    times: SessionTimes,
    plays: Plays,
    timeline: PlayTimeline,
    days: int,
) -> Placement:
    """Sessions pushed apart (same person, at least SESSION_MIN_IDLE_MS between them),
    then every play block at its offset inside its session."""
    s_dur = session_durations(sessions, times, plays.sess, timeline.block, timeline.gap_after)
    s_start = shift_apart(sessions.user, sessions.t0, s_dur, SESSION_MIN_IDLE_MS)
    s_ok = s_start < days * MS_PER_DAY
    blk_off = times.header[plays.sess] + seg_cumsum(timeline.block, plays.first, exclusive=True)
    pl_t0 = s_start[plays.sess] + blk_off
    return Placement(
        s_start=s_start,
        s_end=s_start + s_dur,
        s_ok=s_ok,
        s_day=np.minimum((s_start // MS_PER_DAY), days - 1),
        pl_t0=pl_t0,
        pl_ok=s_ok[plays.sess],
        pl_dev=sessions.dev[plays.sess],
        play_start=pl_t0 + timeline.t_start,
    )
