"""Devices that are not people's own sessions (private): anonymous visitors who browse and
search but never play, and bots (the dirty data a warehouse must filter): scrapers that
request title pages every few seconds and accounts that play non-stop for 20+ hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ottp.simulator.arrays import MS_PER_DAY, NEVER, weighted_choice
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import ET, Events
from ottp.simulator.player_events import heartbeat_rows
from ottp.simulator.rails import (
    PAGE_HOME,
    PAGE_SEARCH,
    PAGE_TITLE,
    R_TRENDING,
    RAIL_LEN,
    NavigationProps,
    rank_weights,
)
from ottp.simulator.sessions import SESSION_MIN_IDLE_MS, local_start_seconds, shift_apart
from ottp.simulator.viewers import COUNTRIES, Devices, add_bot_devices, country_offsets_ms

MIN_BOT_EVENTS = 250  # at any dirty rate > 0: at least one scraper with hundreds of page views
NON_STOP_DAY_EVENTS = 1300  # events of one non-stop player day (a heartbeat a minute)
BOT_PLAY_KEYS = ("play", "title", "dev", "start", "dur")


def no_plays() -> dict[str, np.ndarray]:
    z = np.zeros(0, dtype=np.int64)
    return {k: z for k in BOT_PLAY_KEYS}


def anonymous_events(
    rng: np.random.Generator,
    ev: Events,
    devices: Devices,
    first_dev: int,
    n_anon: int,
    days: int,
    nav: NavigationProps,
    sess_base: int,
) -> None:
    """Visitors who are not logged in: browse, search, click; never play."""
    lists, page_ids = nav.lists, nav.page_ids
    dev = first_dev + np.arange(n_anon)
    ns = 1 + rng.poisson(0.8, n_anon)
    d = np.repeat(dev, ns)
    n = len(d)
    day = rng.integers(0, days, n)
    offs = country_offsets_ms(devices.country[d])
    t = day * MS_PER_DAY + local_start_seconds(rng, n) * 1000 - offs.astype(np.int64)
    t = np.where(t < 0, t + MS_PER_DAY, t)
    o = np.lexsort((t, d))
    d, t, day = d[o], t[o], day[o]
    t = shift_apart(d, t, np.full(n, 10 * 60_000), SESSION_MIN_IDLE_MS)
    day = np.minimum(t // MS_PER_DAY, days - 1)
    sess = -(sess_base + 1 + np.arange(n))  # negative: not a user session
    ev.add(ET["page_view"], t, d, sess=sess, props=page_ids[PAGE_HOME])
    code = np.full(n, R_TRENDING)
    ev.add(ET["rail_impression"], t + 800, d, sess=sess, props=nav.impressions(code, lists[day, 0]))
    srch = rng.random(n) < 0.3
    st = lists[day[srch], 0, rng.integers(0, RAIL_LEN, int(srch.sum()))]
    ev.add(ET["page_view"], t[srch] + 5000, d[srch], sess=sess[srch], props=page_ids[PAGE_SEARCH])
    ev.add(ET["search"], t[srch] + 12000, d[srch], sess=sess[srch], props=nav.search_ids[0, st])
    clk = rng.random(n) < 0.6
    rank = 1 + weighted_choice(rng, rank_weights(), int(clk.sum()))
    ct = lists[day[clk], 0, rank - 1]
    tc = t[clk] + 20000 + rng.integers(0, 60000, int(clk.sum()))
    click_props = nav.click_ids[R_TRENDING, rank]
    ev.add(ET["title_click"], tc, d[clk], sess=sess[clk], title=ct, props=click_props)
    title_page = page_ids[PAGE_TITLE]
    ev.add(ET["page_view"], tc + 1200, d[clk], sess=sess[clk], title=ct, props=title_page)


@dataclass
class _NewBots:
    """Bot devices made so far (appended to ``Devices`` at the end) and the bots' plays."""

    n_dev0: int
    user: list[int] = field(default_factory=list)
    platform: list[int] = field(default_factory=list)
    country: list[int] = field(default_factory=list)
    plays: dict[str, list] = field(default_factory=lambda: {k: [] for k in BOT_PLAY_KEYS})

    def add(self, rng: np.random.Generator, user: int, platform: int) -> int:
        self.user.append(user)
        self.platform.append(platform)
        self.country.append(int(rng.integers(len(COUNTRIES))))
        return self.n_dev0 + len(self.user) - 1


def _non_stop_players(
    rng: np.random.Generator,
    ev: Events,
    bots: _NewBots,
    n_users: int,
    days: int,
    catalog: Catalog,
    budget: int,
    sess_base: int,
    play_id: int,
) -> int:
    """Back-to-back movies with a heartbeat a minute, ~21 h a day, on a TV. Returns accounts."""
    bot_days = max(1, int(round(budget / NON_STOP_DAY_EVENTS)))
    n_bots = max(1, int(np.ceil(bot_days / 3)))
    movies = np.flatnonzero(
        (catalog.kind == 0) & (catalog.avail_day < 0) & (catalog.removed_day >= NEVER)
    )
    n_accounts = 0
    for b in range(n_bots):  # loop per bot device (a handful)
        nd = min(3, bot_days - 3 * b, days)
        if nd <= 0:
            break
        dev = bots.add(rng, n_users + n_accounts, 3)
        n_accounts += 1
        d0 = int(rng.integers(0, days - nd + 1))
        t_begin = d0 * MS_PER_DAY + int(rng.integers(0, 3 * 3_600_000))
        t_stop = t_begin + nd * MS_PER_DAY - int(rng.integers(2, 4) * 3_600_000)
        k = int((t_stop - t_begin) // (60 * 60_000)) + 2
        ti = movies[rng.integers(0, len(movies), k)]
        dur = catalog.duration[ti].astype(np.int64)
        st = t_begin + np.r_[0, np.cumsum(dur * 1000 + 5000)[:-1]]
        ok = st < t_stop
        ti, dur, st = ti[ok], dur[ok], st[ok]
        pids = play_id + np.arange(len(ti))
        play_id += len(ti)
        sess = -(sess_base + 10_000_000 + b + 1)
        ev.add(ET["play_start"], st, dev, sess=sess, play=pids, title=ti, pos=0)
        hp, ho = heartbeat_rows(dur, np.ones(len(ti), dtype=bool))
        t_hb = st[hp] + ho * 1000
        ev.add(ET["heartbeat"], t_hb, dev, sess=sess, play=pids[hp], title=ti[hp], pos=ho)
        ev.add(ET["complete"], st + dur * 1000, dev, sess=sess, play=pids, title=ti, pos=dur)
        for key, v in (("play", pids), ("title", ti), ("dev", np.full(len(ti), dev))):
            bots.plays[key].append(v)
        bots.plays["start"].append(st)
        bots.plays["dur"].append(dur)
    return n_accounts


def _scrapers(
    rng: np.random.Generator,
    ev: Events,
    bots: _NewBots,
    days: int,
    catalog: Catalog,
    title_page: int,
    budget: int,
    sess_base: int,
) -> None:
    """Anonymous web devices requesting title pages every few seconds, for hours."""
    on_air = np.flatnonzero((catalog.avail_day <= 0) & (catalog.removed_day >= NEVER))
    per_hour = int(rng.integers(300, 700))
    n_scr = max(1, int(np.ceil(budget / (per_hour * 8))))
    each = int(np.ceil(budget / n_scr))
    left = budget
    for b in range(n_scr):  # loop per bot device (a handful)
        m = min(left, each)
        if m <= 0:
            break
        left -= m
        dev = bots.add(rng, -1, 0)
        t_begin = int(rng.integers(0, days)) * MS_PER_DAY + int(rng.integers(0, 12 * 3_600_000))
        step = 3_600_000 // per_hour
        t = t_begin + np.arange(m) * step + rng.integers(0, step // 2, m)
        ti = on_air[rng.integers(0, len(on_air), m)]
        sess = -(sess_base + 20_000_000 + b + 1)
        ev.add(ET["page_view"], t, dev, sess=sess, title=ti, props=title_page)


def bot_events(
    rng: np.random.Generator,
    ev: Events,
    devices: Devices,
    n_users: int,
    days: int,
    catalog: Catalog,
    page_ids: np.ndarray,
    target: int,
    sess_base: int,
    play_base: int,
) -> tuple[int, int, dict[str, np.ndarray]]:
    """About ``target`` bot events: non-stop players (from 1500 events on) and scrapers.

    Returns (bot devices, bot accounts, their playbacks: id, title, device, start time in
    ms, duration in s). Bot playbacks get ids from ``play_base`` on.
    """
    if target <= 0 or days < 1:
        return 0, 0, no_plays()
    bots = _NewBots(n_dev0=len(devices.user))
    n_accounts = 0
    player_budget = target // 2 if target >= 1500 else 0
    if player_budget:
        n_accounts = _non_stop_players(
            rng, ev, bots, n_users, days, catalog, player_budget, sess_base, play_base
        )
    scraper_budget = target - player_budget
    if scraper_budget > 0:
        title_page = page_ids[PAGE_TITLE]
        _scrapers(rng, ev, bots, days, catalog, title_page, scraper_budget, sess_base)
    add_bot_devices(rng, devices, bots.user, bots.platform, bots.country)
    bot_plays = {
        k: (np.concatenate(v).astype(np.int64) if v else np.zeros(0, dtype=np.int64))
        for k, v in bots.plays.items()
    }
    return len(bots.user), n_accounts, bot_plays
