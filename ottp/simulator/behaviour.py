"""The simulated behaviour, stage by stage (private): users -> sessions -> play slots ->
titles (series progress, movie choice) -> play outcomes -> timelines -> events.

Each stage is a function over arrays in its own module (viewers, sessions, titles,
playback, rails, timelines, session_events, player_events, visitors); this module runs
them in order, each on its own random stream, and returns the events as columns with the
planted truth. Times are integer milliseconds since the start of the window (UTC midnight
of ``start_date``); ``ottp.simulator.collector`` turns the columns into NDJSON files.

The order of the stages' random draws on each stream, of the events appended and of the
``properties`` fragments registered is what makes a run byte-identical to an earlier one
with the same arguments: keep it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import MS_PER_DAY
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import Events, Props
from ottp.simulator.playback import Plays, playbacks, played_in_window
from ottp.simulator.player_events import player_events
from ottp.simulator.rails import NavigationProps, choose_rails
from ottp.simulator.session_events import (
    SessionScene,
    browse_only_events,
    home_page_events,
    interest_events,
    lifecycle_events,
    play_navigation_events,
    survey_events,
)
from ottp.simulator.sessions import plan_plays, schedule_sessions, session_times
from ottp.simulator.timelines import Placement, place, play_timelines
from ottp.simulator.titles import build_tracks, movie_titles, play_slots, series_titles
from ottp.simulator.viewers import Devices, Users, build_devices, build_users
from ottp.simulator.visitors import MIN_BOT_EVENTS, anonymous_events, bot_events, no_plays

ANONYMOUS_SHARE = 0.35  # anonymous devices per simulated person


@dataclass
class Behaviour:
    """What the people, visitors and bots did in the window, as the collector will see it."""

    events: dict[str, np.ndarray]
    props_table: object  # pyarrow string array
    devices: Devices
    n_sessions: int
    n_plays: int
    session_end: np.ndarray  # per session (after shifting), for late-arrival selection
    bot_devices: int
    bot_events: int
    bot_users: int
    truth: dict[str, np.ndarray]  # the planted truth: see ``truth_arrays``


@dataclass
class _Streams:
    """One random stream per stage, in the order ``simulate`` hands them out."""

    users: np.random.Generator
    sessions: np.random.Generator
    series: np.random.Generator
    outcomes: np.random.Generator
    movies: np.random.Generator
    play_events: np.random.Generator
    account_events: np.random.Generator
    bots: np.random.Generator


def simulate_behaviour(
    streams: list[np.random.Generator],
    catalog: Catalog,
    n_users: int,
    days: int,
    start: dt.date,
    reasons: list[str],
    bot_fraction: float,
) -> Behaviour:
    rng = _Streams(*streams[:8])
    end_ms = days * MS_PER_DAY
    users = build_users(rng.users, n_users, catalog, days, reasons)
    n_anon = max(1, int(round(ANONYMOUS_SHARE * n_users)))
    devices = build_devices(rng.users, users, n_anon)

    sessions = schedule_sessions(rng.sessions, users, days, start)
    tracks = build_tracks(rng.series, users, catalog)
    plan_plays(rng.sessions, sessions, users, tracks.count, tracks.start)
    slots = play_slots(sessions)
    series_titles(slots, tracks, catalog)
    movie_titles(rng.movies, slots, users, catalog)
    plays = playbacks(rng.outcomes, slots, sessions, users, catalog)
    rails = choose_rails(rng.play_events, plays, sessions, catalog)
    timeline = play_timelines(rng.play_events, plays, rails, catalog)
    times = session_times(rng.sessions, sessions, np.bincount(plays.sess, minlength=sessions.n))
    placed = place(sessions, times, plays, timeline, days)

    ev, P = Events(), Props()
    nav = NavigationProps(P, catalog, days)
    sel = np.flatnonzero(placed.s_ok)
    scene = SessionScene(ev, P, nav, users, catalog, sessions, times, placed, sel)
    lifecycle_events(rng.account_events, scene, reasons)
    home_page_events(scene)
    browse_only_events(rng.sessions, scene)
    survey_events(rng.account_events, scene)
    pi = np.flatnonzero(placed.pl_ok)
    play_navigation_events(rng.play_events, scene, plays, rails, timeline, pi, days)
    player_events(ev, plays.out, pi, placed.play_start, placed.pl_dev, plays.sess, plays.title)
    interest_events(rng.play_events, scene, plays, timeline, pi)
    n_user_dev = int(users.n_dev.sum())
    anonymous_events(rng.account_events, ev, devices, n_user_dev, n_anon, days, nav, sessions.n)

    bot_devices = bot_users = 0
    bot_plays = no_plays()
    if bot_fraction > 0:
        target = max(int(round(bot_fraction * ev.count())), MIN_BOT_EVENTS)
        # bot playbacks get ids after all the others
        bot_devices, bot_users, bot_plays = bot_events(
            rng.bots, ev, devices, users.n, days, catalog, nav.page_ids, target, sessions.n, plays.n
        )
    truth = truth_arrays(users, devices, plays, placed, pi, sessions.user, bot_plays, end_ms)

    events = ev.concat()
    # a session may spill past the end of the window: the collector has not seen that yet
    keep = events["t"] < end_ms
    events = {k: v[keep] for k, v in events.items()}
    props_table, events["props"] = P.finalize(events["props"])
    return Behaviour(
        events=events,
        props_table=props_table,
        devices=devices,
        n_sessions=int(placed.s_ok.sum()),
        n_plays=int(placed.pl_ok.sum()),
        session_end=placed.s_end,
        bot_devices=bot_devices,
        bot_events=int(devices.bot[events["dev"]].sum()),
        bot_users=bot_users,
        truth=truth,
    )


def truth_arrays(
    users: Users,
    devices: Devices,
    plays: Plays,
    placed: Placement,
    pi: np.ndarray,
    s_user: np.ndarray,
    bot_plays: dict[str, np.ndarray],
    end_ms: int,
) -> dict[str, np.ndarray]:
    """What the simulator planted, for tests that compare the marts with it.

    ``pref``: each simulated person's category preference (users x categories).
    ``play_*``: every playback whose ``play_start`` falls inside the window (people's, then
    the non-stop players'), with the seconds of content it played before the end of the
    window, as simulated: before the collector drops, corrupts or delays any line.
    """
    play_start_abs, pl_dev = placed.play_start, placed.pl_dev
    a = pi[play_start_abs[pi] < end_ms]
    true_s = played_in_window(plays.out, play_start_abs, end_ms)[a]
    b = np.flatnonzero(bot_plays["start"] < end_ms)
    bot_s = np.clip((end_ms - bot_plays["start"][b]) / 1000.0, 0.0, bot_plays["dur"][b])
    return dict(
        pref=users.pref,
        play=np.concatenate([a, bot_plays["play"][b]]).astype(np.int64),
        play_user=np.concatenate([s_user[plays.sess[a]], devices.user[bot_plays["dev"][b]]]),
        play_title=np.concatenate([plays.title[a], bot_plays["title"][b]]).astype(np.int64),
        play_dev=np.concatenate([pl_dev[a], bot_plays["dev"][b]]).astype(np.int64),
        play_true_s=np.concatenate([true_s, bot_s.astype(np.float64)]),
        play_bot=np.concatenate([np.zeros(len(a), bool), np.ones(len(b), bool)]),
    )
