"""Playbacks (private): how far each play gets, its seeks and pauses, its wall-clock length;
plays cut short that continue in the person's next session; the seconds each play really
played before the end of the window (the planted truth).

An outcome is a dict of per-play arrays: ``p0`` (start position, s), ``end``, ``dur``,
``fin``, ``interrupted``, ``killed`` (the app died: no closing event), ``seek``, ``s_from``,
``s_to``, ``o_seek`` (played seconds before the seek), ``played`` (s), ``wall_ms``,
``n_pause``, and the pauses ``pause_play``, ``pause_off`` (played seconds), ``pause_gap`` (ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import (
    MS_PER_DAY,
    cumcount,
    first_from_keys,
    seg_cumsum,
    sigmoid,
    uniform_int,
)
from ottp.simulator.catalog import Catalog
from ottp.simulator.sessions import Sessions
from ottp.simulator.titles import PlaySlots
from ottp.simulator.viewers import Users

HEARTBEAT_INTERVAL_S = 60


@dataclass
class Plays:
    """Every playback, ordered by session then order in it (continuations first)."""

    out: dict[str, np.ndarray]  # the outcome arrays (see the module docstring)
    sess: np.ndarray
    title: np.ndarray
    cont: np.ndarray  # continues a play interrupted in the previous session
    k: np.ndarray  # 0, 1, 2... within the session
    first: np.ndarray  # row of the session's first play

    @property
    def n(self) -> int:
        return len(self.sess)


def _extent(rng, catalog, users, user, title, p0, cont, can_interrupt):
    """Where each play ends, whether it finished and whether it was interrupted."""
    n = len(title)
    dur = catalog.duration[title].astype(np.int64)
    ep = catalog.kind[title] == 1
    C = len(catalog.categories)
    aff = np.clip(np.log(users.pref[user, catalog.cat[title]] * C), -2.5, 2.0)
    x = -0.1 + 0.8 * aff + 1.2 * catalog.quality[title] + users.bias[user] + 0.3 * ep + 1.3 * cont
    fin = rng.random(n) < sigmoid(x)
    credits = np.where(
        ep, uniform_int(rng, 40, 110, n), (dur * rng.uniform(0.03, 0.07, n)).astype(np.int64)
    )
    credits_at = np.maximum(dur - credits, p0 + 30)
    at_credits = fin & (rng.random(n) < 0.35) & (credits_at < dur)
    early = rng.random(n) < 0.55
    room = np.maximum(credits_at - p0, 1)
    drop = np.where(early, 5 + rng.exponential(240.0, n), room * rng.beta(1.0, 1.3, n))
    drop_pos = np.clip(p0 + drop.astype(np.int64), p0 + 3, np.maximum(credits_at - 5, p0 + 3))
    end = np.where(fin, np.where(at_credits, credits_at, dur), drop_pos)
    interrupted = can_interrupt & (rng.random(n) < 0.14) & (dur - p0 > 900)
    end = np.where(interrupted, p0 + ((dur - p0) * rng.uniform(0.2, 0.8, n)).astype(np.int64), end)
    end = np.minimum(np.maximum(end, p0 + 1), dur)
    return dur, fin & ~interrupted, interrupted, end


def _seek(rng, p0, end):
    """One seek at most: forward (skip ahead) or backward (re-watch a scene)."""
    n = len(p0)
    span = end - p0
    seek = (span > 600) & (rng.random(n) < 0.15)
    s_from = p0 + (span * rng.uniform(0.1, 0.85, n)).astype(np.int64)
    fwd = rng.random(n) < 0.6
    s_to_f = np.minimum(s_from + uniform_int(rng, 30, 600, n), end - 5)
    fwd &= s_to_f > s_from + 5
    s_to = np.where(fwd, s_to_f, np.maximum(s_from - uniform_int(rng, 10, 120, n), 0))
    o_seek = s_from - p0
    fix = seek & (o_seek % HEARTBEAT_INTERVAL_S == 0)
    o_seek = o_seek + fix
    s_from = s_from + fix
    played = np.where(seek, (s_from - p0) + (end - s_to), span)
    return seek, s_from, s_to, o_seek, np.maximum(played, 1)


def _pauses(rng, played, seek, o_seek):
    """Pauses as offsets in played seconds, sorted within the play, and their length (ms)."""
    n = len(played)
    n_pause = np.minimum(rng.poisson(played / 2400.0), 3)
    n_pause = np.where(played > 10, n_pause, 0)
    pp = np.repeat(np.arange(n), n_pause)
    off = (1 + rng.random(len(pp)) * (played[pp] - 2)).astype(np.int64)
    o = np.lexsort((off, pp))
    pp, off = pp[o], off[o]
    # no pause at a heartbeat, at the seek, or twice at the same moment
    ok = (
        (off % HEARTBEAT_INTERVAL_S != 0)
        & ~(seek[pp] & (off == o_seek[pp]))
        & (off >= 1)
        & (off < played[pp])
    )
    ok &= np.r_[True, (pp[1:] != pp[:-1]) | (off[1:] != off[:-1])]
    pp, off = pp[ok], off[ok]
    gap = np.clip(rng.lognormal(np.log(60_000), 1.0, len(pp)), 3000, 20 * 60_000).astype(np.int64)
    return pp, off, gap


def play_outcomes(
    rng: np.random.Generator,
    catalog: Catalog,
    users: Users,
    user: np.ndarray,
    title: np.ndarray,
    p0: np.ndarray,
    cont: np.ndarray,
    can_interrupt: np.ndarray,
) -> dict[str, np.ndarray]:
    """How far each playback gets, its seeks and pauses, and its wall-clock length."""
    n = len(title)
    dur, fin, interrupted, end = _extent(rng, catalog, users, user, title, p0, cont, can_interrupt)
    seek, s_from, s_to, o_seek, played = _seek(rng, p0, end)
    pp, off, gap = _pauses(rng, played, seek, o_seek)
    n_pause = np.bincount(pp, minlength=n)
    wall = played * 1000 + np.bincount(pp, weights=gap, minlength=n).astype(np.int64)
    killed = ~interrupted & (rng.random(n) < 0.012)
    return dict(
        end=end,
        p0=p0.astype(np.int64),
        dur=dur,
        fin=fin,
        interrupted=interrupted,
        killed=killed,
        seek=seek,
        s_from=s_from,
        s_to=s_to,
        o_seek=o_seek,
        played=played,
        wall_ms=wall,
        n_pause=n_pause,
        pause_play=pp,
        pause_off=off,
        pause_gap=gap,
    )


def playbacks(
    rng: np.random.Generator,
    slots: PlaySlots,
    sessions: Sessions,
    users: Users,
    catalog: Catalog,
) -> Plays:
    """Outcomes of every slot; an interrupted last play continues at the start of the
    person's next session (the last session of the window just stops)."""
    NP, S, p_sess = slots.n, sessions.n, slots.sess
    n_plays = sessions.n_plays
    p_order = np.arange(NP) - np.repeat(np.cumsum(n_plays) - n_plays, n_plays)
    is_last = p_order == n_plays[p_sess] - 1
    out1 = play_outcomes(
        rng,
        catalog,
        users,
        slots.user,
        slots.title,
        np.zeros(NP, dtype=np.int64),
        cont=np.zeros(NP, dtype=bool),
        can_interrupt=is_last,
    )
    nxt = p_sess + 1
    ok = out1["interrupted"] & (nxt < S)
    nxt_c = np.minimum(nxt, S - 1)
    ok &= (sessions.user[nxt_c] == slots.user) & sessions.regular[nxt_c]
    ok &= catalog.available(slots.title, sessions.t0[nxt_c] // MS_PER_DAY, margin=2)
    out1["interrupted"] &= ok
    ci = np.flatnonzero(ok)
    out2 = play_outcomes(
        rng,
        catalog,
        users,
        slots.user[ci],
        slots.title[ci],
        out1["end"][ci],
        cont=np.ones(len(ci), dtype=bool),
        can_interrupt=np.zeros(len(ci), bool),
    )
    return _merge(out1, out2, slots, p_order, ci, nxt[ci])


def _merge(out1, out2, slots: PlaySlots, p_order, ci, c_sess) -> Plays:
    """Plays and their continuations in one order: by session, continuations first."""
    NP, p_sess, p_title = slots.n, slots.sess, slots.title
    all_sess = np.concatenate([p_sess, c_sess])
    all_order = np.concatenate([p_order, np.full(len(ci), -1)])
    merge = np.lexsort((all_order, all_sess))
    pl = {k: np.concatenate([out1[k], out2[k]])[merge] for k in out1 if not k.startswith("pause_")}
    inv = np.empty_like(merge)
    inv[merge] = np.arange(len(merge))
    pause_play = inv[np.concatenate([out1["pause_play"], out2["pause_play"] + NP])]
    pause_off = np.concatenate([out1["pause_off"], out2["pause_off"]])
    pause_gap = np.concatenate([out1["pause_gap"], out2["pause_gap"]])
    o = np.lexsort((pause_off, pause_play))
    pl["pause_play"], pl["pause_off"], pl["pause_gap"] = pause_play[o], pause_off[o], pause_gap[o]
    pl_sess = all_sess[merge]
    pfirst = first_from_keys(pl_sess)
    return Plays(
        out=pl,
        sess=pl_sess,
        title=np.concatenate([p_title, p_title[ci]])[merge],
        cont=np.concatenate([np.zeros(NP, bool), np.ones(len(ci), bool)])[merge],
        k=cumcount(pfirst),
        first=pfirst,
    )


def played_in_window(pl: dict, start_abs: np.ndarray, end_ms: int) -> np.ndarray:
    """Seconds of content each play played before the end of the window (``end_ms``).

    A play that runs past the end of the window counts what it played until then: the
    wall-clock time left, less the part of each pause that falls before the end.
    """
    played = pl["played"].astype(np.float64)
    n = len(played)
    rem = (end_ms - start_abs).astype(np.float64)  # wall-clock ms left in the window
    cut = start_abs + pl["wall_ms"] > end_ms
    if not cut.any():
        return played
    pp, off, gap = pl["pause_play"], pl["pause_off"], pl["pause_gap"]  # sorted by play, offset
    first = first_from_keys(pp) if len(pp) else pp
    pause_wall = off * 1000 + seg_cumsum(gap, first, exclusive=True)
    idle = np.clip(rem[pp] - pause_wall, 0, gap)
    idle_before_end = np.bincount(pp, weights=idle, minlength=n)
    in_window = np.clip((rem - idle_before_end) / 1000.0, 0.0, played)
    return np.where(cut, in_window, played)
