"""Sessions of the simulated people (private): when they happen, on which device, how many
plays each holds, what happens in a session's first minutes, and where each session lands
in the window once sessions are pushed apart.

Session kinds: 0 viewing, 1 signup, 2 reactivation, 3 cancellation, 4 deletion request.
Times are integer milliseconds since the start of the window (UTC midnight).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import (
    MS_PER_DAY,
    choice_rows,
    first_from_keys,
    seg_cummax,
    seg_cumsum,
    uniform_int,
    weighted_choice,
)
from ottp.simulator.viewers import Users

SESSION_MIN_IDLE_MS = 45 * 60 * 1000  # sessions are separated by at least this much idle time
VIEWING, SIGNUP, REACTIVATION, CANCELLATION, DELETION = range(5)


@dataclass
class Sessions:
    """One row per session, ordered by user, then day, then start."""

    user: np.ndarray
    day: np.ndarray  # day of the window it was planned for
    kind: np.ndarray
    t0: np.ndarray  # planned start (ms), before sessions are pushed apart
    dev: np.ndarray
    # filled by plan_plays
    regular: np.ndarray | None = None  # viewing, signup or reactivation: the home page opens
    n_plays: np.ndarray | None = None
    track: np.ndarray | None = None  # series track the plays start on, -1: movies

    @property
    def n(self) -> int:
        return len(self.user)


@dataclass
class SessionTimes:
    """Offsets (ms from the session start) of what happens in each session's first minutes."""

    t_sub: np.ndarray
    t_consent: np.ndarray
    h0: np.ndarray  # home page view
    n_fill: np.ndarray  # rails shown on the home page before any play
    header: np.ndarray  # where the first play block starts
    browse_only: np.ndarray
    bo_click: np.ndarray
    bo_t_click: np.ndarray
    bo_watch: np.ndarray
    bo_t_watch: np.ndarray
    t_cancel: np.ndarray
    t_survey: np.ndarray
    t_delete: np.ndarray


def local_start_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after local midnight: an evening peak, a lunch bump, mornings, some at night."""
    comp = weighted_choice(rng, (0.58, 0.22, 0.1, 0.1), n)
    h = np.select(
        [comp == 0, comp == 1, comp == 2],
        [rng.normal(20.6, 1.5, n), rng.normal(13.5, 2.2, n), rng.normal(8.0, 1.2, n)],
        rng.uniform(0, 24, n),
    )
    return (np.mod(h, 24.0) * 3600).astype(np.int64)


def weekday_factor(start: dt.date, days: int) -> np.ndarray:
    f = {0: 0.88, 1: 0.88, 2: 0.9, 3: 0.92, 4: 1.12, 5: 1.3, 6: 1.2}
    return np.array([f[(start + dt.timedelta(days=d)).weekday()] for d in range(days)])


def shift_apart(user: np.ndarray, start: np.ndarray, dur: np.ndarray, gap: int) -> np.ndarray:
    """Push sessions (rows grouped by user, in order) later so they do not overlap.

    start'_k = max(start_k, start'_{k-1} + dur_{k-1} + gap), solved with a grouped cummax.
    """
    first = first_from_keys(user)
    c = seg_cumsum(dur + gap, first, exclusive=True)
    return c + seg_cummax(start - c, first)


def schedule_sessions(
    rng: np.random.Generator, users: Users, days: int, start: dt.date
) -> Sessions:
    """Viewing sessions by each person's activity, plus one per lifecycle step in the window."""
    wf = weekday_factor(start, days)
    dayv = np.arange(days)[None, :]
    active = (
        (dayv >= users.signup_day[:, None])
        & (dayv < users.delete_day[:, None])
        & ~((dayv >= users.cancel_day[:, None]) & (dayv < users.react_day[:, None]))
        & (dayv != users.cancel_day[:, None])
        & (dayv != users.delete_day[:, None])
    )
    cnt = np.minimum(rng.poisson(users.lam[:, None] * wf[None, :] * active), 5)
    su, sd = np.nonzero(cnt)
    reps = cnt[su, sd]
    s_user = [np.repeat(su, reps)]
    s_day = [np.repeat(sd, reps)]
    s_kind = [np.zeros(int(reps.sum()), dtype=np.int64)]
    for kind, day in (
        (SIGNUP, users.signup_day),
        (REACTIVATION, users.react_day),
        (CANCELLATION, users.cancel_day),
        (DELETION, users.delete_day),
    ):
        who = np.flatnonzero((day >= 0) & (day < days))
        s_user.append(who)
        s_day.append(day[who])
        s_kind.append(np.full(len(who), kind))
    s_user = np.concatenate(s_user).astype(np.int64)
    s_day = np.concatenate(s_day).astype(np.int64)
    s_kind = np.concatenate(s_kind)
    s_local = local_start_seconds(rng, len(s_user))
    # within a day: signup and reactivation first, then viewing, then cancel and deletion
    prio = np.select([s_kind <= VIEWING, s_kind <= REACTIVATION], [1, 0], 2)
    order = np.lexsort((s_local, prio, s_day, s_user))
    s_user, s_day, s_kind, s_local = s_user[order], s_day[order], s_kind[order], s_local[order]
    S = len(s_user)
    s_t0 = s_day * MS_PER_DAY + s_local * 1000 - users.offset_ms[s_user]
    s_t0 = np.where(s_t0 < 0, s_t0 + MS_PER_DAY, s_t0)
    s_dev = users.dev_start[s_user] + choice_rows(users.dev_cum, s_user, rng.random(S))
    s_dev = np.where(s_kind == SIGNUP, users.dev_start[s_user], s_dev)
    return Sessions(user=s_user, day=s_day, kind=s_kind, t0=s_t0, dev=s_dev)


def plan_plays(
    rng: np.random.Generator,
    sessions: Sessions,
    users: Users,
    n_tracks: np.ndarray,
    track_start: np.ndarray,
) -> None:
    """How many plays each session holds, and the series track a series session starts on.

    Some sessions only browse; a series session binges a few episodes, others watch one movie
    (sometimes two). ``n_tracks`` and ``track_start`` describe each person's series queue.
    """
    s_kind, s_user, S = sessions.kind, sessions.user, sessions.n
    regular = s_kind <= REACTIVATION
    browse = regular & (rng.random(S) < np.where(s_kind == SIGNUP, 0.3, 0.12))
    series_mode = regular & ~browse & (n_tracks[s_user] > 0) & (rng.random(S) < users.s_aff[s_user])
    binge_p = np.where(users.lam[s_user] > 1.0, 0.3, 0.5)
    n_plays = np.where(
        series_mode, np.minimum(rng.geometric(binge_p), 8), 1 + (rng.random(S) < 0.12)
    )
    sessions.regular = regular
    sessions.n_plays = np.where(regular & ~browse, n_plays, 0)
    sessions.track = np.where(
        series_mode,
        track_start[s_user] + (rng.random(S) * np.minimum(n_tracks[s_user], 2)).astype(np.int64),
        -1,
    )


def session_times(
    rng: np.random.Generator, sessions: Sessions, plays_per_session: np.ndarray
) -> SessionTimes:
    """The first minutes of each session: lifecycle steps, the home page, browse-only clicks."""
    s_kind, S = sessions.kind, sessions.n
    t_sub = uniform_int(rng, 30000, 180000, S)
    t_consent = t_sub + uniform_int(rng, 2000, 10000, S)
    h0 = np.select(
        [s_kind == SIGNUP, s_kind == REACTIVATION],
        [t_consent + uniform_int(rng, 3000, 10000, S), uniform_int(rng, 2000, 8000, S)],
        0,
    )
    n_fill = 1 + (rng.random(S) < 0.5)
    header = h0 + 6000
    bo = sessions.regular & (plays_per_session == 0)  # browse-only sessions
    bo_click = bo & (rng.random(S) < 0.5)
    bo_t_click = header + uniform_int(rng, 5000, 30000, S)
    bo_watch = bo_click & (rng.random(S) < 0.35)
    bo_t_watch = bo_t_click + uniform_int(rng, 3000, 15000, S)
    t_cancel = uniform_int(rng, 20000, 90000, S)
    t_survey = t_cancel + uniform_int(rng, 5000, 25000, S)
    t_delete = uniform_int(rng, 30000, 120000, S)
    return SessionTimes(
        t_sub=t_sub,
        t_consent=t_consent,
        h0=h0,
        n_fill=n_fill,
        header=header,
        browse_only=bo,
        bo_click=bo_click,
        bo_t_click=bo_t_click,
        bo_watch=bo_watch,
        bo_t_watch=bo_t_watch,
        t_cancel=t_cancel,
        t_survey=t_survey,
        t_delete=t_delete,
    )


def session_durations(
    sessions: Sessions,
    times: SessionTimes,
    play_sess: np.ndarray,
    block: np.ndarray,
    gap_after: np.ndarray,
) -> np.ndarray:
    """Each session's length (ms): its header, then its play blocks less the last gap."""
    S, s_kind = sessions.n, sessions.kind
    sum_block = np.bincount(play_sess, weights=block, minlength=S).astype(np.int64)
    last_gap = np.zeros(S, dtype=np.int64)
    n = len(play_sess)
    lastp = (
        np.flatnonzero(np.r_[play_sess[1:] != play_sess[:-1], True]) if n else np.zeros(0, np.int64)
    )
    last_gap[play_sess[lastp]] = gap_after[lastp]
    bo_click, bo_watch = times.bo_click, times.bo_watch
    return np.select(
        [s_kind == CANCELLATION, s_kind == DELETION, times.browse_only],
        [
            times.t_survey + 1000,
            times.t_delete + 1000,
            np.where(
                bo_watch,
                times.bo_t_watch,
                np.where(bo_click, times.bo_t_click + 2000, times.header),
            )
            + 1000,
        ],
        times.header + sum_block - last_gap,
    )
