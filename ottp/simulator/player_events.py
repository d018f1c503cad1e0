"""Player events (private): play_start, a heartbeat every HEARTBEAT_INTERVAL_S seconds of
playback, pause and resume, seek, and complete or stop, with the position in the content.

Wall-clock times include the pauses: a pause at played second ``o`` shifts everything after
it by its length.
"""

from __future__ import annotations

import numpy as np

from ottp.simulator.events import ET, Events
from ottp.simulator.playback import HEARTBEAT_INTERVAL_S


class _PlayClock:
    """Wall-clock offset and content position of played second ``o`` of a play."""

    BIG = np.int64(1) << np.int64(32)

    def __init__(self, pl: dict, n: int):
        # pause CSR (plays are in the merged order; pauses sorted by play, then offset)
        pp, off, gap = pl["pause_play"], pl["pause_off"], pl["pause_gap"]
        self.pstart = np.zeros(n + 1, dtype=np.int64)
        self.pstart[1:] = np.cumsum(pl["n_pause"])
        self.gcum = np.zeros(len(gap) + 1, dtype=np.int64)
        self.gcum[1:] = np.cumsum(gap)
        self.pkeys = pp.astype(np.int64) * self.BIG + off
        self.pl = pl

    def wall_at(self, play: np.ndarray, o: np.ndarray) -> np.ndarray:
        q = play.astype(np.int64) * self.BIG + o
        k = np.searchsorted(self.pkeys, q, side="left")  # pauses before second o
        return o * 1000 + self.gcum[k] - self.gcum[self.pstart[play]]

    def pos_at(self, play: np.ndarray, o: np.ndarray) -> np.ndarray:
        pl = self.pl
        after = pl["seek"][play] & (o >= pl["o_seek"][play])
        return np.where(after, pl["s_to"][play] + (o - pl["o_seek"][play]), pl["p0"][play] + o)


def heartbeat_rows(played: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(play, played second) of every heartbeat of the plays in ``keep``."""
    ids = np.arange(len(played))
    h = np.where(keep, (played - 1) // HEARTBEAT_INTERVAL_S, 0)
    hp = np.repeat(ids, h)
    hk = np.arange(len(hp)) - np.repeat(np.cumsum(h) - h, h) + 1
    return hp, hk * HEARTBEAT_INTERVAL_S


def player_events(
    ev: Events,
    pl: dict,
    pi: np.ndarray,
    start_abs: np.ndarray,
    dev: np.ndarray,
    sess: np.ndarray,
    title: np.ndarray,
) -> None:
    """Every player event of the plays ``pi`` (outcome arrays ``pl``, see playback)."""
    n = len(start_abs)
    keep = np.zeros(n, dtype=bool)
    keep[pi] = True
    p0, played, end, dur = pl["p0"], pl["played"], pl["end"], pl["dur"]
    clock = _PlayClock(pl, n)
    ids = np.arange(n)
    a = ids[keep]
    ev.add(ET["play_start"], start_abs[a], dev[a], sess=sess[a], play=a, title=title[a], pos=p0[a])
    hp, ho = heartbeat_rows(played, keep)
    ev.add(
        ET["heartbeat"],
        start_abs[hp] + clock.wall_at(hp, ho),
        dev[hp],
        sess=sess[hp],
        play=hp,
        title=title[hp],
        pos=clock.pos_at(hp, ho),
    )
    pp, off, gap = pl["pause_play"], pl["pause_off"], pl["pause_gap"]
    k = keep[pp]
    a, o = pp[k], off[k]
    tp = start_abs[a] + clock.wall_at(a, o)
    pos = clock.pos_at(a, o)
    ev.add(ET["pause"], tp, dev[a], sess=sess[a], play=a, title=title[a], pos=pos)
    ev.add(ET["resume"], tp + gap[k], dev[a], sess=sess[a], play=a, title=title[a], pos=pos)
    a = ids[keep & pl["seek"]]
    ev.add(
        ET["seek"],
        start_abs[a] + clock.wall_at(a, pl["o_seek"][a]),
        dev[a],
        sess=sess[a],
        play=a,
        title=title[a],
        pos=pl["s_to"][a],
        fpos=pl["s_from"][a],
    )
    a = ids[keep & ~pl["killed"]]
    complete = end[a] >= dur[a]
    ev.add(
        np.where(complete, ET["complete"], ET["stop"]),
        start_abs[a] + pl["wall_ms"][a],
        dev[a],
        sess=sess[a],
        play=a,
        title=title[a],
        pos=end[a],
    )
