"""Behaviour model of the event simulator (private).

Everything is generated as arrays, stage by stage:

users -> sessions -> play slots -> titles (series progress / movie choice)
-> play outcomes -> session timelines -> events.

Times are integer milliseconds since the start of the window (UTC midnight of
``start_date``). The output module turns the arrays into NDJSON lines.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ottp.contract import rules as contract_rules
from ottp.simulator.arrays import (
    MS_PER_DAY,
    NEVER,
    choice_rows,
    cumcount,
    first_from_keys,
    fixed_width_strings,
    id_strings,
    seg_cummax,
    seg_cummin,
    seg_cumsum,
    weighted_choice,
)
from ottp.simulator.catalog import N_CLUSTERS, Catalog, category_weights

HEARTBEAT_INTERVAL_S = 60

# The contract's order; ET below numbers event types by it.
EVENT_TYPES = contract_rules.ALL_EVENT_TYPES
ET = {name: i for i, name in enumerate(EVENT_TYPES)}
PLAYER_TYPES = contract_rules.FAMILIES["player"]
NAVIGATION_TYPES = contract_rules.FAMILIES["navigation"]

PLATFORMS = contract_rules.PLATFORMS
PLATFORM_WEIGHTS = (0.2, 0.2, 0.25, 0.35)
APP_VERSIONS = {
    "web": ("2026.07.2", "2026.06.4", "2026.05.1"),
    "ios": ("5.12.0", "5.11.2", "5.10.1"),
    "android": ("5.12.1", "5.11.0", "5.9.3"),
    "tv": ("3.4.0", "3.3.2", "3.1.0"),
}
APP_VERSION_WEIGHTS = (0.6, 0.3, 0.1)
# country, UTC offset (hours), share of users
COUNTRIES = (
    ("US", -5.0, 0.34),
    ("GB", 0.0, 0.10),
    ("DE", 1.0, 0.08),
    ("FR", 1.0, 0.06),
    ("BR", -3.0, 0.10),
    ("MX", -6.0, 0.06),
    ("CA", -5.0, 0.05),
    ("ES", 1.0, 0.05),
    ("IN", 5.5, 0.08),
    ("NL", 1.0, 0.03),
    ("SE", 1.0, 0.03),
    ("AU", 10.0, 0.02),
)
PLANS = ("basic", "standard", "premium")
PLAN_WEIGHTS = (0.3, 0.45, 0.25)
SIGNUP_METHODS = ("email", "google", "apple")
SHARE_CHANNELS = ("whatsapp", "copy_link", "messages", "facebook", "x", "email")
PAGES = ("home", "browse", "search", "title", "account")
RAIL_FIXED = (
    "trending",
    "new_releases",
    "because_you_watched",
    "continue_watching",
    "search",
    "up_next",
)
R_TRENDING, R_NEW, R_BYW, R_CONTINUE, R_SEARCH, R_UPNEXT = range(6)
RAIL_LEN = 10
SESSION_MIN_IDLE_MS = 45 * 60 * 1000  # sessions are separated by at least this much idle time
TRACK_QUEUE = 10  # series each user may get into during the window
MIN_BOT_EVENTS = 250  # at any dirty rate > 0: at least one scraper with hundreds of page views

# cancel reason weights for (disengaged, engaged) users; codes not listed get the default
REASON_WEIGHTS = {
    "too_expensive": (0.25, 0.20),
    "not_enough_content": (0.30, 0.05),
    "finished_show": (0.05, 0.30),
    "technical_issues": (0.10, 0.05),
    "switching_service": (0.10, 0.15),
    "temporary_break": (0.10, 0.20),
    "other": (0.10, 0.10),
}
REASON_DEFAULT = (0.05, 0.05)
REACTIVATE_P = {"temporary_break": 0.5}
REACTIVATE_DEFAULT = 0.15

# activity: sessions per day ~ lognormal(log(median), sigma)
ACTIVITY_MEDIAN = 0.045
ACTIVITY_SIGMA = 1.5
ACTIVITY_MAX = 4.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def uniform_int(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.integers(int(lo), int(hi) + 1, n).astype(np.int64)


# --------------------------------------------------------------------------- property strings


class Props:
    """Registry of `,"properties":{...}` fragments; events refer to them by id (-1: none)."""

    CHUNK = np.int64(1) << np.int64(40)

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.strings: list[str] = []
        self.chunks: list = []  # Arrow string arrays of per-event fragments
        self.chunk_len = 0

    def id(self, body: str) -> int:
        frag = ',"properties":' + body
        i = self.ids.get(frag)
        if i is None:
            i = self.ids[frag] = len(self.strings)
            self.strings.append(frag)
        return i

    def ids_for(self, bodies: list[str]) -> np.ndarray:
        return np.array([self.id(b) for b in bodies], dtype=np.int64)

    def add_chunk(self, arr) -> np.ndarray:
        base = self.chunk_len
        self.chunks.append(arr)
        self.chunk_len += len(arr)
        return self.CHUNK + base + np.arange(len(arr), dtype=np.int64)

    def finalize(self, ids: np.ndarray):
        table = pa.concat_arrays(
            [pa.array(self.strings, type=pa.string())] + [c.cast(pa.string()) for c in self.chunks]
        )
        out = ids.copy()
        big = ids >= self.CHUNK
        out[big] = ids[big] - self.CHUNK + len(self.strings)
        return table, out


def js(s: str) -> str:
    """A JSON string literal (inputs are ASCII)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- events buffer


class Events:
    FIELDS = ("etype", "t", "dev", "sess", "play", "title", "pos", "fpos", "props")
    DTYPES = (
        np.int8,
        np.int64,
        np.int32,
        np.int64,
        np.int64,
        np.int32,
        np.int32,
        np.int32,
        np.int64,
    )

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, etype, t, dev, sess=-1, play=-1, title=-1, pos=-1, fpos=-1, props=-1) -> None:
        t = np.asarray(t, dtype=np.int64)
        n = len(t)
        if n == 0:
            return
        vals = dict(
            etype=etype,
            t=t,
            dev=dev,
            sess=sess,
            play=play,
            title=title,
            pos=pos,
            fpos=fpos,
            props=props,
        )
        part = {}
        for f, d in zip(self.FIELDS, self.DTYPES, strict=True):
            v = vals[f]
            if np.ndim(v) == 0:
                part[f] = np.full(n, v, dtype=d)
            else:
                part[f] = np.asarray(v).astype(d, copy=False)
        self.parts.append(part)

    def concat(self) -> dict[str, np.ndarray]:
        out = {}
        for f, d in zip(self.FIELDS, self.DTYPES, strict=True):
            out[f] = (
                np.concatenate([p[f] for p in self.parts]) if self.parts else np.zeros(0, dtype=d)
            )
        return out


# --------------------------------------------------------------------------- users


@dataclass
class Users:
    n: int
    country: np.ndarray
    offset_ms: np.ndarray
    signup_day: np.ndarray  # -1: existed before the window
    lam: np.ndarray  # sessions per day
    s_aff: np.ndarray  # share of sessions spent on series
    bias: np.ndarray  # completion propensity
    engagement: np.ndarray
    pref: np.ndarray  # (n, C) category preference
    clpref: np.ndarray  # (n, C, K) sub-genre preference
    plan: np.ndarray
    dev_start: np.ndarray
    n_dev: np.ndarray
    dev_cum: np.ndarray  # (n, 3) cumulative device usage weights
    cancel_day: np.ndarray
    reason: np.ndarray
    react_day: np.ndarray
    delete_day: np.ndarray


@dataclass
class Devices:
    user: np.ndarray  # -1 anonymous
    platform: np.ndarray
    version: np.ndarray  # index into version_names
    country: np.ndarray
    version_names: list[str]
    bot: np.ndarray  # bool


def _device_versions(
    rng: np.random.Generator, platform: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    names = [v for p in PLATFORMS for v in APP_VERSIONS[p]]
    which = weighted_choice(rng, APP_VERSION_WEIGHTS, len(platform))
    return platform.astype(np.int64) * 3 + which, names


def build_users(
    rng: np.random.Generator, n: int, catalog: Catalog, days: int, reasons: list[str]
) -> Users:
    C = len(catalog.categories)
    country = weighted_choice(rng, [c[2] for c in COUNTRIES], n)
    offset_ms = (np.array([c[1] for c in COUNTRIES])[country] * 3_600_000).astype(np.int64)
    pre = rng.random(n) < 0.75
    signup_day = np.where(pre, -1, rng.integers(0, days, n)).astype(np.int64)
    lam = np.minimum(rng.lognormal(np.log(ACTIVITY_MEDIAN), ACTIVITY_SIGMA, n), ACTIVITY_MAX)
    s_aff = rng.beta(2.5 + 2.0 * (lam > 1.0), 1.6)
    bias = rng.normal(0.0, 0.6, n)
    alpha = 0.18 * C * category_weights(catalog.categories)
    pref = rng.dirichlet(alpha, n)
    pref = 0.97 * pref + 0.03 / C
    clpref = rng.dirichlet(np.full(N_CLUSTERS, 0.6), (n, C)).astype(np.float32)
    plan = weighted_choice(rng, PLAN_WEIGHTS, n)

    r = rng.random(n)
    n_dev = 1 + (r > 0.5).astype(np.int64) + (r > 0.85)
    dev_start = np.zeros(n, dtype=np.int64)
    dev_start[1:] = np.cumsum(n_dev)[:-1]
    w = rng.dirichlet(np.ones(3), n) * (np.arange(3)[None, :] < n_dev[:, None])
    w[:, 0] += 1e-9
    dev_cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
    dev_cum[:, -1] = 1.0

    # engagement drives churn: low activity and low completion propensity cancel more
    z = (np.log(lam) - np.log(ACTIVITY_MEDIAN)) / ACTIVITY_SIGMA
    engagement = (z + bias / 0.6) / np.sqrt(2.0)
    p_cancel = np.clip(0.07 * days / 30.0 * 2.0 * sigmoid(-1.6 * engagement), 0.0, 0.85)
    lo = np.maximum(signup_day, 0) + 3
    can = lo < days - 1
    cancels = can & (rng.random(n) < p_cancel)
    deletes = can & ~cancels & (rng.random(n) < min(0.004 * days / 30.0, 0.05))
    span = np.maximum(days - lo, 1)
    cancel_day = np.where(cancels, lo + (rng.random(n) * span).astype(np.int64), NEVER)
    delete_day = np.where(deletes, lo + (rng.random(n) * span).astype(np.int64), NEVER)
    wd = np.array([REASON_WEIGHTS.get(c, REASON_DEFAULT)[0] for c in reasons])
    we = np.array([REASON_WEIGHTS.get(c, REASON_DEFAULT)[1] for c in reasons])
    cum_d = np.cumsum(wd / wd.sum())
    cum_e = np.cumsum(we / we.sum())
    ur = rng.random(n)
    reason = np.where(
        engagement < 0,
        np.searchsorted(cum_d, ur, side="right"),
        np.searchsorted(cum_e, ur, side="right"),
    )
    reason = np.minimum(reason, len(reasons) - 1)
    p_react = np.array([REACTIVATE_P.get(c, REACTIVATE_DEFAULT) for c in reasons])[reason]
    react = cancels & (rng.random(n) < p_react)
    react_day = np.where(react, cancel_day + 7 + rng.geometric(1 / 14, n), NEVER)
    react_day = np.where(react_day < days, react_day, NEVER)
    return Users(
        n=n,
        country=country,
        offset_ms=offset_ms,
        signup_day=signup_day,
        lam=lam,
        s_aff=s_aff,
        bias=bias,
        engagement=engagement,
        pref=pref,
        clpref=clpref,
        plan=plan,
        dev_start=dev_start,
        n_dev=n_dev,
        dev_cum=dev_cum,
        cancel_day=cancel_day,
        reason=reason,
        react_day=react_day,
        delete_day=delete_day,
    )


def build_devices(rng: np.random.Generator, users: Users, n_anon: int) -> Devices:
    nd = int(users.n_dev.sum())
    owner = np.repeat(np.arange(users.n), users.n_dev)
    platform = np.concatenate(
        [
            weighted_choice(rng, PLATFORM_WEIGHTS, nd),
            weighted_choice(rng, (0.45, 0.2, 0.3, 0.05), n_anon),
        ]
    )
    version, names = _device_versions(rng, platform)
    anon_country = weighted_choice(rng, [c[2] for c in COUNTRIES], n_anon)
    return Devices(
        user=np.concatenate([owner, np.full(n_anon, -1)]).astype(np.int64),
        platform=platform.astype(np.int64),
        version=version,
        country=np.concatenate([users.country[owner], anon_country]),
        version_names=names,
        bot=np.zeros(nd + n_anon, dtype=bool),
    )


# --------------------------------------------------------------------------- time helpers


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


# --------------------------------------------------------------------------- rails


def rail_lists(catalog: Catalog, days: int) -> np.ndarray:
    """(days, 2 + C, RAIL_LEN) title indexes: trending, new releases, then one per category."""
    C = len(catalog.categories)
    L = RAIL_LEN
    is_rep = catalog.kind == 0
    firsts = catalog.s_titles[catalog.s_offsets[:-1][np.diff(catalog.s_offsets) > 0]]
    is_rep = is_rep.copy()
    is_rep[firsts] = True
    out = np.zeros((days, 2 + C, L), dtype=np.int64)
    pop_order = np.argsort(-catalog.pop, kind="stable")
    new_order = np.lexsort((-catalog.pop, -catalog.avail_day))
    for d in range(days):
        avail = (catalog.avail_day <= d) & (catalog.removed_day > d)
        rep = avail & is_rep
        top = pop_order[rep[pop_order]]
        if len(top) == 0:
            top = pop_order[avail[pop_order]]
        fill = np.resize(top, L)
        out[d, 0] = fill
        newest = new_order[avail[new_order]]
        out[d, 1] = np.resize(newest if len(newest) else top, L)
        head = top[: 2 * L]
        for c in range(C):
            tc = top[catalog.cat[top] == c]
            lst = np.concatenate([tc[:L], head[catalog.cat[head] != c]])[:L]
            out[d, 2 + c] = np.resize(lst if len(lst) else fill, L)
    return out


def rail_with_title(
    lists: np.ndarray, day: np.ndarray, key: np.ndarray, title: np.ndarray, rank: np.ndarray
) -> np.ndarray:
    """The rail's list for (day, key) with ``title`` placed at 1-based ``rank``."""
    base = lists[day, key].copy()
    if len(base) == 0:
        return base
    r = rank - 1
    rows = np.arange(len(base))
    eq = base == title[:, None]
    has = eq.any(1)
    q = eq.argmax(1)
    base[rows[has], q[has]] = base[rows[has], r[has]]
    base[rows, r] = title
    return base


# --------------------------------------------------------------------------- sampling


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
    w = p * mask
    s = w.sum(-1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1), p)
    cum = np.cumsum(w, axis=-1)
    cum[..., -1] = 1.0
    return cum


# --------------------------------------------------------------------------- the simulation


@dataclass
class Model:
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


def simulate_model(
    streams: list[np.random.Generator],
    catalog: Catalog,
    n_users: int,
    days: int,
    start: dt.date,
    reasons: list[str],
    bot_fraction: float,
) -> Model:
    (rng_u, rng_s, rng_p, rng_o, rng_t, rng_e, rng_a, rng_b) = streams[:8]
    C = len(catalog.categories)
    K = N_CLUSTERS
    end_ms = days * MS_PER_DAY
    props = Props()
    ev = Events()

    users = build_users(rng_u, n_users, catalog, days, reasons)
    n_anon = max(1, int(round(0.35 * n_users)))
    devices = build_devices(rng_u, users, n_anon)
    n_user_dev = int(users.n_dev.sum())

    # ------------------------------------------------------------------ sessions
    wf = weekday_factor(start, days)
    dayv = np.arange(days)[None, :]
    active = (
        (dayv >= users.signup_day[:, None])
        & (dayv < users.delete_day[:, None])
        & ~((dayv >= users.cancel_day[:, None]) & (dayv < users.react_day[:, None]))
        & (dayv != users.cancel_day[:, None])
        & (dayv != users.delete_day[:, None])
    )
    cnt = np.minimum(rng_s.poisson(users.lam[:, None] * wf[None, :] * active), 5)
    su, sd = np.nonzero(cnt)
    reps = cnt[su, sd]
    s_user = [np.repeat(su, reps)]
    s_day = [np.repeat(sd, reps)]
    s_kind = [np.zeros(int(reps.sum()), dtype=np.int64)]
    for kind, day in (
        (1, users.signup_day),
        (2, users.react_day),
        (3, users.cancel_day),
        (4, users.delete_day),
    ):
        who = np.flatnonzero((day >= 0) & (day < days))
        s_user.append(who)
        s_day.append(day[who])
        s_kind.append(np.full(len(who), kind))
    s_user = np.concatenate(s_user).astype(np.int64)
    s_day = np.concatenate(s_day).astype(np.int64)
    s_kind = np.concatenate(s_kind)
    s_local = local_start_seconds(rng_s, len(s_user))
    prio = np.select([s_kind <= 0, s_kind <= 2], [1, 0], 2)
    order = np.lexsort((s_local, prio, s_day, s_user))
    s_user, s_day, s_kind, s_local = s_user[order], s_day[order], s_kind[order], s_local[order]
    S = len(s_user)
    s_t0 = s_day * MS_PER_DAY + s_local * 1000 - users.offset_ms[s_user]
    s_t0 = np.where(s_t0 < 0, s_t0 + MS_PER_DAY, s_t0)
    s_dev = users.dev_start[s_user] + choice_rows(users.dev_cum, s_user, rng_s.random(S))
    s_dev = np.where(s_kind == 1, users.dev_start[s_user], s_dev)

    # ------------------------------------------------------------------ series tracks
    # Each user has a queue of series drawn from their preferences. Sessions alternate
    # between the first two; when a series runs out (finished, caught up with weekly
    # releases, or the user lost interest) the following slots move to the next series.
    has_series_ck = np.zeros((C, K), dtype=bool)
    has_series_ck[catalog.s_cat, catalog.s_cluster] = True
    has_series_c = has_series_ck.any(1)
    queue = TRACK_QUEUE if catalog.n_series else 0
    tr_user = np.repeat(np.arange(users.n), queue)
    cum_pref_s = _restricted_cum(users.pref, has_series_c[None, :])
    tr_cat = choice_rows(cum_pref_s, tr_user, rng_p.random(len(tr_user)))
    cl_cum = _restricted_cum(users.clpref[tr_user, tr_cat], has_series_ck[tr_cat])
    tr_cl = choice_rows(cl_cum, np.arange(len(tr_user)), rng_p.random(len(tr_user)))
    if catalog.n_series:
        s_sampler = GroupSampler(
            np.arange(catalog.n_series),
            catalog.s_cat.astype(np.int64) * K + catalog.s_cluster,
            catalog.s_pop,
            C * K,
        )
        tr_series = s_sampler.draw(rng_p, tr_cat * K + tr_cl)
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
    started = (users.signup_day[tr_user] < 0) & (tr_rank < 2) & (rng_p.random(len(tr_user)) < 0.35)
    tr_c0 = np.where(started, (rng_p.random(len(tr_user)) * (a0 + 1)).astype(np.int64), 0)
    tr_c0 = np.minimum(tr_c0, a0)
    tr_budget = rng_p.geometric(1.0 / (3.0 + 45.0 * users.pref[tr_user, tr_cat] ** 1.5))

    # ------------------------------------------------------------------ plays per session
    regular = s_kind <= 2
    browse = regular & (rng_s.random(S) < np.where(s_kind == 1, 0.3, 0.12))
    series_mode = regular & ~browse & (n_tr[s_user] > 0) & (rng_s.random(S) < users.s_aff[s_user])
    binge_p = np.where(users.lam[s_user] > 1.0, 0.3, 0.5)
    n_plays = np.where(
        series_mode, np.minimum(rng_s.geometric(binge_p), 8), 1 + (rng_s.random(S) < 0.12)
    )
    n_plays = np.where(regular & ~browse, n_plays, 0)
    s_track = np.where(
        series_mode,
        tr_start[s_user] + (rng_s.random(S) * np.minimum(n_tr[s_user], 2)).astype(np.int64),
        -1,
    )

    p_sess = np.repeat(np.arange(S), n_plays)
    p_user = s_user[p_sess]
    p_day = s_t0[p_sess] // MS_PER_DAY  # UTC day; sessions only ever move later
    p_track = s_track[p_sess]
    NP = len(p_sess)
    p_title = np.full(NP, -1, dtype=np.int64)

    # series progress: a capped counter per track, n_k = min(n_{k-1} + 1, cap_k)
    for rnd in range(TRACK_QUEUE):  # rounds over the queue, each one vectorised
        sl = np.flatnonzero(p_track >= 0)
        if len(sl) == 0:
            break
        sl = sl[np.argsort(p_track[sl], kind="stable")]
        trk = p_track[sl]
        first = first_from_keys(trk)
        k = cumcount(first)
        ser = tr_series[trk]
        c0 = tr_c0[trk]
        cap = np.minimum(catalog.episodes_released(ser, p_day[sl]), c0 + tr_budget[trk])
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
        nxt = tr_start[u_sl] + 2 + rnd
        p_track[sl] = np.where(~watched & (nxt < tr_start[u_sl] + n_tr[u_sl]), nxt, -1)

    # movies for every other slot: category by preference, sub-genre by taste, title by popularity
    movies = np.flatnonzero(catalog.kind == 0)
    has_movie_ck = np.zeros((C, K), dtype=bool)
    has_movie_ck[catalog.cat[movies], catalog.cluster[movies]] = True
    m_sampler = GroupSampler(
        movies,
        catalog.cat[movies].astype(np.int64) * K + catalog.cluster[movies],
        catalog.pop[movies],
        C * K,
    )
    fallback = np.zeros(C, dtype=np.int64)
    for c in range(C):
        mc = movies[
            (catalog.cat[movies] == c)
            & (catalog.avail_day[movies] < 0)
            & (catalog.removed_day[movies] >= NEVER)
        ]
        fallback[c] = mc[np.argmax(catalog.pop[mc])] if len(mc) else movies[0]
    cum_pref_m = _restricted_cum(users.pref, has_movie_ck.any(1)[None, :])

    def draw_movies(idx: np.ndarray) -> np.ndarray:
        u = p_user[idx]
        c = choice_rows(cum_pref_m, u, rng_t.random(len(idx)))
        cc = _restricted_cum(users.clpref[u, c], has_movie_ck[c])
        kk = choice_rows(cc, np.arange(len(idx)), rng_t.random(len(idx)))
        g = c * K + kk
        t = m_sampler.draw(rng_t, g)
        for _ in range(6):
            bad = ~catalog.available(t, p_day[idx], margin=2)
            if not bad.any():
                break
            t[bad] = m_sampler.draw(rng_t, g[bad])
        bad = ~catalog.available(t, p_day[idx], margin=2)
        t[bad] = fallback[c[bad]]
        return t

    mv = np.flatnonzero(p_title < 0)
    p_title[mv] = draw_movies(mv)
    for _ in range(2):  # people rarely rewatch a movie: redraw repeats
        o = np.lexsort((mv, p_title[mv], p_user[mv]))
        rep = np.zeros(len(o), dtype=bool)
        rep[1:] = (p_user[mv][o][1:] == p_user[mv][o][:-1]) & (
            p_title[mv][o][1:] == p_title[mv][o][:-1]
        )
        again = np.sort(mv[o[rep]])
        if len(again) == 0:
            break
        p_title[again] = draw_movies(again)

    # ------------------------------------------------------------------ outcomes
    p_order = np.arange(NP) - np.repeat(np.cumsum(n_plays) - n_plays, n_plays)
    is_last = p_order == n_plays[p_sess] - 1
    out1 = play_outcomes(
        rng_o,
        catalog,
        users,
        p_user,
        p_title,
        np.zeros(NP, dtype=np.int64),
        cont=np.zeros(NP, dtype=bool),
        can_interrupt=is_last,
    )
    # an interrupted last play continues at the start of the user's next session
    nxt = p_sess + 1
    ok = out1["interrupted"] & (nxt < S)
    nxt_c = np.minimum(nxt, S - 1)
    ok &= (s_user[nxt_c] == p_user) & regular[nxt_c]
    ok &= catalog.available(p_title, s_t0[nxt_c] // MS_PER_DAY, margin=2)
    out1["interrupted"] &= ok  # the last session of the window just stops
    ci = np.flatnonzero(ok)
    c_sess = nxt[ci]
    out2 = play_outcomes(
        rng_o,
        catalog,
        users,
        p_user[ci],
        p_title[ci],
        out1["end"][ci],
        cont=np.ones(len(ci), dtype=bool),
        can_interrupt=np.zeros(len(ci), bool),
    )
    # merge and order plays by (session, order); continuations come first
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
    pl_title = np.concatenate([p_title, p_title[ci]])[merge]
    pl_cont = np.concatenate([np.zeros(NP, bool), np.ones(len(ci), bool)])[merge]
    NPL = len(pl_sess)
    s_nplay = np.bincount(pl_sess, minlength=S)
    pfirst = first_from_keys(pl_sess)
    pl_k = cumcount(pfirst)

    # rails and clicks
    prev_title = np.r_[-1, pl_title[:-1]]
    autoplay = (
        (pl_k > 0)
        & (catalog.kind[pl_title] == 1)
        & (catalog.kind[prev_title] == 1)
        & (catalog.series[pl_title] == catalog.series[np.maximum(prev_title, 0)])
        & (catalog.ordinal[pl_title] == catalog.ordinal[np.maximum(prev_title, 0)] + 1)
    )
    r = rng_e.random(NPL)
    resume_series = (catalog.kind[pl_title] == 1) & (catalog.ordinal[pl_title] > 0) & (r < 0.7)
    search = ~autoplay & ~pl_cont & ~resume_series & (rng_e.random(NPL) < 0.1)
    recent = catalog.avail_day[pl_title] >= s_day[pl_sess] - 30
    rail = np.select(
        [autoplay, pl_cont | resume_series, search, r < 0.3, (r < 0.45) & recent, r < 0.7],
        [R_UPNEXT, R_CONTINUE, R_SEARCH, R_TRENDING, R_NEW, R_BYW],
        len(RAIL_FIXED) + catalog.cat[pl_title].astype(np.int64),
    )
    rank = np.where(
        rail == R_CONTINUE,
        1 + (rng_e.random(NPL) < 0.3),
        1 + weighted_choice(rng_e, 1.0 / np.arange(1, RAIL_LEN + 1), NPL),
    )
    rank = np.where(rail == R_UPNEXT, 1, rank)

    # ------------------------------------------------------------------ timelines
    n = NPL
    has_imp = ~autoplay
    t_pv_home = np.zeros(n, dtype=np.int64)  # only when pl_k > 0 and not autoplay
    t_pv_search = 2000 + uniform_int(rng_e, 0, 8000, n)
    t_search = t_pv_search + uniform_int(rng_e, 3000, 12000, n)
    t_imp = np.where(
        search, t_search + uniform_int(rng_e, 300, 800, n), uniform_int(rng_e, 500, 2000, n)
    )
    browse_ms = np.where(
        pl_cont, uniform_int(rng_e, 2000, 8000, n), uniform_int(rng_e, 3000, 40000, n)
    )
    t_click = np.where(autoplay, 0, t_imp + browse_ms)
    pv_title = ~autoplay & ~pl_cont
    t_pvt = t_click + uniform_int(rng_e, 500, 2000, n)
    t_start = np.where(
        pv_title,
        t_pvt + uniform_int(rng_e, 2000, 15000, n),
        t_click + uniform_int(rng_e, 500, 3000, n),
    )
    wall = pl["wall_ms"]
    # interest after the play
    ended = ~pl["killed"] & ~pl["interrupted"]
    pct = pl["end"] / catalog.duration[pl_title]
    fin = pl["fin"]
    q = catalog.quality[pl_title]
    ri = rng_e.random(n)
    p_like = 0.015 + 0.22 * fin + 0.05 * pct + 0.05 * q
    p_dis = np.where(pct < 0.3, 0.16 * (1 - pct / 0.3), 0.0) + 0.002
    like = ended & (ri < p_like)
    dislike = ended & ~like & (ri < p_like + p_dis)
    rate = ended & (rng_e.random(n) < 0.05 + 0.06 * fin + 0.04 * (pct < 0.2))
    stars = np.clip(np.round(1 + 4 * pct**0.8 + rng_e.normal(0, 0.6, n) + q), 1, 5).astype(np.int64)
    watch = ended & (rng_e.random(n) < 0.015)
    share = ended & (rng_e.random(n) < 0.003 + 0.02 * fin)
    post_flags = np.stack([like, dislike, rate, watch, share], axis=1)
    post_step = uniform_int(rng_e, 2000, 9000, n * 5).reshape(n, 5) * post_flags
    post_t = wall[:, None] + np.cumsum(post_step, axis=1)
    post_len = post_step.sum(1) + 1000
    gap_after = np.where(
        np.r_[autoplay[1:], False],
        uniform_int(rng_e, 3000, 12000, n),
        uniform_int(rng_e, 2000, 60000, n),
    )
    block = t_start + wall + post_len + gap_after

    # session headers
    t_sub = uniform_int(rng_s, 30000, 180000, S)
    t_consent = t_sub + uniform_int(rng_s, 2000, 10000, S)
    h0 = np.select(
        [s_kind == 1, s_kind == 2],
        [t_consent + uniform_int(rng_s, 3000, 10000, S), uniform_int(rng_s, 2000, 8000, S)],
        0,
    )
    n_fill = 1 + (rng_s.random(S) < 0.5)
    header = h0 + 6000
    bo = regular & (s_nplay == 0)  # browse-only sessions
    bo_click = bo & (rng_s.random(S) < 0.5)
    bo_t_click = header + uniform_int(rng_s, 5000, 30000, S)
    bo_watch = bo_click & (rng_s.random(S) < 0.35)
    bo_t_watch = bo_t_click + uniform_int(rng_s, 3000, 15000, S)
    t_cancel = uniform_int(rng_s, 20000, 90000, S)
    t_survey = t_cancel + uniform_int(rng_s, 5000, 25000, S)
    t_delete = uniform_int(rng_s, 30000, 120000, S)

    sum_block = np.bincount(pl_sess, weights=block, minlength=S).astype(np.int64)
    last_gap = np.zeros(S, dtype=np.int64)
    lastp = np.flatnonzero(np.r_[pl_sess[1:] != pl_sess[:-1], True]) if n else np.zeros(0, np.int64)
    last_gap[pl_sess[lastp]] = gap_after[lastp]
    s_dur = np.select(
        [s_kind == 3, s_kind == 4, bo],
        [
            t_survey + 1000,
            t_delete + 1000,
            np.where(bo_watch, bo_t_watch, np.where(bo_click, bo_t_click + 2000, header)) + 1000,
        ],
        header + sum_block - last_gap,
    )
    s_start = shift_apart(s_user, s_t0, s_dur, SESSION_MIN_IDLE_MS)
    s_ok = s_start < end_ms
    s_end = s_start + s_dur

    # play block offsets inside sessions
    blk_off = header[pl_sess] + seg_cumsum(block, pfirst, exclusive=True)
    pl_t0 = s_start[pl_sess] + blk_off  # block start
    pl_ok = s_ok[pl_sess]
    pl_dev = s_dev[pl_sess]

    # ------------------------------------------------------------------ event emission
    P = props
    page_ids = P.ids_for(['{"page":' + js(p) + "}" for p in PAGES])
    cats = catalog.categories
    rail_names = list(RAIL_FIXED) + [f"category:{c}" for c in cats]
    click_ids = P.ids_for(
        [f'{{"rail":{js(rn)},"rank":{rk}}}' for rn in rail_names for rk in range(RAIL_LEN + 1)]
    ).reshape(len(rail_names), RAIL_LEN + 1)
    lists = rail_lists(catalog, days)
    tid_q = _quoted_title_ids(catalog)
    search_ids = _search_props(P, catalog)

    def impression_props(rail_codes: np.ndarray, titles: np.ndarray) -> np.ndarray:
        mat = tid_q[titles].reshape(len(titles), -1)[:, :-1]
        body = fixed_width_strings(np.ascontiguousarray(mat))
        rn = pa.array(rail_names).take(pa.array(rail_codes))
        frag = pc.binary_join_element_wise(
            ',"properties":{"rail":"', rn, '","title_ids":[', body, "]}", ""
        )
        return P.add_chunk(frag)

    def list_key(rail_code: np.ndarray, title: np.ndarray) -> np.ndarray:
        return np.select(
            [
                rail_code == R_TRENDING,
                rail_code == R_CONTINUE,
                rail_code == R_NEW,
                rail_code >= len(RAIL_FIXED),
            ],
            [0, 0, 1, 2 + rail_code - len(RAIL_FIXED)],
            2 + catalog.cat[np.maximum(title, 0)].astype(np.int64),
        )

    s_day_eff = np.minimum((s_start // MS_PER_DAY), days - 1)
    sel = np.flatnonzero(s_ok)

    # lifecycle
    plan_ids = P.ids_for(['{"plan":' + js(p) + "}" for p in PLANS])
    method_ids = P.ids_for(['{"method":' + js(m) + "}" for m in SIGNUP_METHODS])
    consent_ids = P.ids_for(['{"marketing_opt_in":false}', '{"marketing_opt_in":true}'])
    a = sel[s_kind[sel] == 1]
    u = s_user[a]
    ev.add(
        ET["signup"],
        s_start[a],
        s_dev[a],
        sess=a,
        props=method_ids[weighted_choice(rng_a, (0.6, 0.25, 0.15), len(a))],
    )
    ev.add(ET["subscribe"], s_start[a] + t_sub[a], s_dev[a], sess=a, props=plan_ids[users.plan[u]])
    ev.add(
        ET["consent_update"],
        s_start[a] + t_consent[a],
        s_dev[a],
        sess=a,
        props=consent_ids[(rng_a.random(len(a)) < 0.45).astype(np.int64)],
    )
    a = sel[s_kind[sel] == 2]
    ev.add(ET["reactivate"], s_start[a], s_dev[a], sess=a, props=plan_ids[users.plan[s_user[a]]])
    a = sel[s_kind[sel] == 3]
    u = s_user[a]
    cancel_ids = np.array(
        [[P.id(f'{{"reason":{js(rc)},"plan":{js(pn)}}}') for pn in PLANS] for rc in reasons]
    )
    survey_reason_ids = P.ids_for(
        [
            f'{{"survey_id":"unsubscribe","question_id":"reason","answer":{js(rc)}}}'
            for rc in reasons
        ]
    )
    ev.add(ET["page_view"], s_start[a], s_dev[a], sess=a, props=page_ids[4])
    ev.add(
        ET["cancel"],
        s_start[a] + t_cancel[a],
        s_dev[a],
        sess=a,
        props=cancel_ids[users.reason[u], users.plan[u]],
    )
    ev.add(
        ET["survey_response"],
        s_start[a] + t_survey[a],
        s_dev[a],
        sess=a,
        props=survey_reason_ids[users.reason[u]],
    )
    a = sel[s_kind[sel] == 4]
    ev.add(ET["page_view"], s_start[a], s_dev[a], sess=a, props=page_ids[4])
    ev.add(ET["deletion_request"], s_start[a] + t_delete[a], s_dev[a], sess=a)

    # home page and filler rails at the start of every viewing session
    a = sel[regular[sel]]
    ev.add(ET["page_view"], s_start[a] + h0[a], s_dev[a], sess=a, props=page_ids[0])
    top_cat = np.argmax(users.pref, axis=1)
    for j in range(2):
        b = a[n_fill[a] > j]
        code = (
            np.full(len(b), R_TRENDING)
            if j == 0
            else len(RAIL_FIXED) + top_cat[s_user[b]].astype(np.int64)
        )
        key = list_key(code, np.full(len(b), -1))
        titles = lists[s_day_eff[b], key]
        ev.add(
            ET["rail_impression"],
            s_start[b] + h0[b] + 400 + 600 * j,
            s_dev[b],
            sess=b,
            props=impression_props(code, titles),
        )
    # browse-only sessions: sometimes a click on the trending rail and a watchlist add
    b = sel[bo_click[sel]]
    brank = 1 + weighted_choice(rng_s, 1.0 / np.arange(1, RAIL_LEN + 1), len(b))
    bt = lists[s_day_eff[b], 0, brank - 1]
    ev.add(
        ET["title_click"],
        s_start[b] + bo_t_click[b],
        s_dev[b],
        sess=b,
        title=bt,
        props=click_ids[R_TRENDING, brank],
    )
    ev.add(
        ET["page_view"],
        s_start[b] + bo_t_click[b] + 1000,
        s_dev[b],
        sess=b,
        title=bt,
        props=page_ids[3],
    )
    w = bo_watch[b]
    ev.add(
        ET["add_to_watchlist"],
        s_start[b][w] + bo_t_watch[b][w],
        s_dev[b][w],
        sess=b[w],
        title=bt[w],
    )

    # occasional surveys and consent changes inside ordinary sessions
    _extra_session_events(
        rng_a, ev, P, users, sel[regular[sel]], s_user, s_start, h0, s_dev, catalog
    )

    # per play: navigation before the play
    pi = np.flatnonzero(pl_ok)
    t0 = pl_t0[pi]
    dv = pl_dev[pi]
    ss = pl_sess[pi]
    ti = pl_title[pi]
    a = pi[(pl_k[pi] > 0) & ~autoplay[pi]]
    ev.add(ET["page_view"], pl_t0[a] + t_pv_home[a], pl_dev[a], sess=pl_sess[a], props=page_ids[0])
    a = pi[search[pi]]
    qv = (rng_e.random(len(a)) < 0.5).astype(np.int64)
    ev.add(
        ET["search"],
        pl_t0[a] + t_search[a],
        pl_dev[a],
        sess=pl_sess[a],
        props=search_ids[qv, pl_title[a]],
    )
    ev.add(
        ET["page_view"], pl_t0[a] + t_pv_search[a], pl_dev[a], sess=pl_sess[a], props=page_ids[2]
    )
    a = pi[has_imp[pi]]
    dday = np.minimum(pl_t0[a] // MS_PER_DAY, days - 1)
    titles = rail_with_title(lists, dday, list_key(rail[a], pl_title[a]), pl_title[a], rank[a])
    ev.add(
        ET["rail_impression"],
        pl_t0[a] + t_imp[a],
        pl_dev[a],
        sess=pl_sess[a],
        props=impression_props(rail[a], titles),
    )
    ev.add(
        ET["title_click"],
        t0 + t_click[pi],
        dv,
        sess=ss,
        title=ti,
        props=click_ids[rail[pi], rank[pi]],
    )
    a = pi[pv_title[pi]]
    ev.add(
        ET["page_view"],
        pl_t0[a] + t_pvt[a],
        pl_dev[a],
        sess=pl_sess[a],
        title=pl_title[a],
        props=page_ids[3],
    )

    # player events
    play_start_abs = pl_t0 + t_start
    _emit_player(ev, pl, pi, play_start_abs, pl_dev, pl_sess, pl_title, catalog)

    # interest after the play
    rating_ids = P.ids_for([f'{{"rating":{k}}}' for k in range(1, 6)])
    share_ids = P.ids_for(['{"channel":' + js(c) + "}" for c in SHARE_CHANNELS])
    base = play_start_abs
    for j, (name, flag) in enumerate(
        (
            ("like", like),
            ("dislike", dislike),
            ("rating", rate),
            ("add_to_watchlist", watch),
            ("share", share),
        )
    ):
        a = pi[flag[pi]]
        pr = -1
        if name == "rating":
            pr = rating_ids[stars[a] - 1]
        elif name == "share":
            pr = share_ids[weighted_choice(rng_e, (0.35, 0.3, 0.15, 0.1, 0.05, 0.05), len(a))]
        ev.add(
            ET[name],
            base[a] + post_t[a, j],
            pl_dev[a],
            sess=pl_sess[a],
            title=pl_title[a],
            props=pr,
        )

    # anonymous visitors: navigation only
    _anonymous(
        rng_a,
        ev,
        devices,
        n_user_dev,
        n_anon,
        days,
        lists,
        catalog,
        page_ids,
        click_ids,
        search_ids,
        impression_props,
        S,
    )
    bot_devices = bot_users = 0
    bot_plays = _no_plays()
    n_before_bots = sum(len(p["t"]) for p in ev.parts)
    if bot_fraction > 0:
        target = max(int(round(bot_fraction * n_before_bots)), MIN_BOT_EVENTS)
        # bot playbacks get ids after all the others
        bot_devices, bot_users, bot_plays = _bots(
            rng_b, ev, devices, users.n, days, catalog, page_ids, target, S, NPL
        )
    truth = truth_arrays(
        users, devices, pl, pi, play_start_abs, pl_sess, s_user, pl_title, pl_dev, bot_plays, end_ms
    )

    events = ev.concat()
    # a session may spill past the end of the window: the collector has not seen that yet
    keep = events["t"] < end_ms
    events = {k: v[keep] for k, v in events.items()}
    props_table, events["props"] = P.finalize(events["props"])
    n_bot_kept = int(devices.bot[events["dev"]].sum())
    return Model(
        events=events,
        props_table=props_table,
        devices=devices,
        n_sessions=int(s_ok.sum()),
        n_plays=int(pl_ok.sum()),
        session_end=s_end,
        bot_devices=bot_devices,
        bot_events=n_bot_kept,
        bot_users=bot_users,
        truth=truth,
    )


def _no_plays() -> dict[str, np.ndarray]:
    z = np.zeros(0, dtype=np.int64)
    return dict(play=z, title=z, dev=z, start=z, dur=z)


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


def truth_arrays(
    users: Users,
    devices: Devices,
    pl: dict,
    pi: np.ndarray,
    play_start_abs: np.ndarray,
    pl_sess: np.ndarray,
    s_user: np.ndarray,
    pl_title: np.ndarray,
    pl_dev: np.ndarray,
    bot_plays: dict[str, np.ndarray],
    end_ms: int,
) -> dict[str, np.ndarray]:
    """What the simulator planted, for tests that compare the marts with it.

    ``pref``: each simulated person's category preference (users x categories).
    ``play_*``: every playback whose ``play_start`` falls inside the window (people's, then
    the non-stop players'), with the seconds of content it played before the end of the
    window, as simulated: before the collector drops, corrupts or delays any line.
    """
    a = pi[play_start_abs[pi] < end_ms]
    true_s = played_in_window(pl, play_start_abs, end_ms)[a]
    b = np.flatnonzero(bot_plays["start"] < end_ms)
    bot_s = np.clip((end_ms - bot_plays["start"][b]) / 1000.0, 0.0, bot_plays["dur"][b])
    return dict(
        pref=users.pref,
        play=np.concatenate([a, bot_plays["play"][b]]).astype(np.int64),
        play_user=np.concatenate([s_user[pl_sess[a]], devices.user[bot_plays["dev"][b]]]),
        play_title=np.concatenate([pl_title[a], bot_plays["title"][b]]).astype(np.int64),
        play_dev=np.concatenate([pl_dev[a], bot_plays["dev"][b]]).astype(np.int64),
        play_true_s=np.concatenate([true_s, bot_s.astype(np.float64)]),
        play_bot=np.concatenate([np.zeros(len(a), bool), np.ones(len(b), bool)]),
    )


def _quoted_title_ids(catalog: Catalog) -> np.ndarray:
    ids = id_strings("t_", np.arange(1, catalog.n + 1), catalog.id_width)
    n, w = ids.shape
    out = np.empty((n, w + 3), dtype=np.uint8)
    out[:, 0] = ord('"')
    out[:, 1 : w + 1] = ids
    out[:, w + 1] = ord('"')
    out[:, w + 2] = ord(",")
    return out


def _search_props(P: Props, catalog: Catalog) -> np.ndarray:
    """(2, titles) property ids: a search for the title's name, or for one of its keywords."""
    names = []
    for i in range(catalog.n):
        nm = catalog.s_names[catalog.series[i]] if catalog.kind[i] == 1 else catalog.names[i]
        names.append(nm.lower().removeprefix("the "))
    kw = [k[0].replace("-", " ") if k else "new" for k in catalog.keywords]
    return np.stack(
        [
            P.ids_for(['{"query":' + js(x) + "}" for x in names]),
            P.ids_for(['{"query":' + js(x) + "}" for x in kw]),
        ]
    )


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
    fin = fin & ~interrupted
    span = end - p0
    # one seek at most: forward (skip ahead) or backward (re-watch a scene)
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
    played = np.maximum(played, 1)
    # pauses: offsets in played seconds, sorted within the play
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
    n_pause = np.bincount(pp, minlength=n)
    gap = np.clip(rng.lognormal(np.log(60_000), 1.0, len(pp)), 3000, 20 * 60_000).astype(np.int64)
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


def _emit_player(
    ev: Events,
    pl: dict,
    pi: np.ndarray,
    start_abs: np.ndarray,
    dev: np.ndarray,
    sess: np.ndarray,
    title: np.ndarray,
    catalog: Catalog,
) -> None:
    """play_start, heartbeats every HEARTBEAT_INTERVAL_S of playback, pause/resume, seek, end."""
    n = len(start_abs)
    keep = np.zeros(n, dtype=bool)
    keep[pi] = True
    p0, played, end = pl["p0"], pl["played"], pl["end"]
    seek, o_seek, s_to, s_from = pl["seek"], pl["o_seek"], pl["s_to"], pl["s_from"]
    # pause CSR (plays are in the merged order; pause arrays refer to pre-merge indexes)
    pp, off, gap = pl["pause_play"], pl["pause_off"], pl["pause_gap"]
    pstart = np.zeros(n + 1, dtype=np.int64)
    pstart[1:] = np.cumsum(pl["n_pause"])
    gcum = np.zeros(len(gap) + 1, dtype=np.int64)
    gcum[1:] = np.cumsum(gap)
    big = np.int64(1) << np.int64(32)
    pkeys = pp.astype(np.int64) * big + off

    def wall_at(play: np.ndarray, o: np.ndarray, inclusive: bool = False) -> np.ndarray:
        q = play.astype(np.int64) * big + o
        k = np.searchsorted(pkeys, q, side="right" if inclusive else "left")
        return o * 1000 + gcum[k] - gcum[pstart[play]]

    def pos_at(play: np.ndarray, o: np.ndarray) -> np.ndarray:
        after = seek[play] & (o >= o_seek[play])
        return np.where(after, s_to[play] + (o - o_seek[play]), p0[play] + o)

    ids = np.arange(n)
    dur = pl["dur"]
    a = ids[keep]
    ev.add(ET["play_start"], start_abs[a], dev[a], sess=sess[a], play=a, title=title[a], pos=p0[a])
    h = np.where(keep, (played - 1) // HEARTBEAT_INTERVAL_S, 0)
    hp = np.repeat(ids, h)
    hk = np.arange(len(hp)) - np.repeat(np.cumsum(h) - h, h) + 1
    ho = hk * HEARTBEAT_INTERVAL_S
    ev.add(
        ET["heartbeat"],
        start_abs[hp] + wall_at(hp, ho),
        dev[hp],
        sess=sess[hp],
        play=hp,
        title=title[hp],
        pos=pos_at(hp, ho),
    )
    k = keep[pp]
    a, o = pp[k], off[k]
    tp = start_abs[a] + wall_at(a, o)
    ev.add(ET["pause"], tp, dev[a], sess=sess[a], play=a, title=title[a], pos=pos_at(a, o))
    ev.add(
        ET["resume"], tp + gap[k], dev[a], sess=sess[a], play=a, title=title[a], pos=pos_at(a, o)
    )
    a = ids[keep & seek]
    ev.add(
        ET["seek"],
        start_abs[a] + wall_at(a, o_seek[a]),
        dev[a],
        sess=sess[a],
        play=a,
        title=title[a],
        pos=s_to[a],
        fpos=s_from[a],
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


def _extra_session_events(rng, ev, P, users, sess, s_user, s_start, h0, s_dev, catalog) -> None:
    """NPS and content-request survey answers and consent changes, at most one of each per user."""
    if len(sess) == 0:
        return
    u = s_user[sess]
    nps_ids = P.ids_for(
        [f'{{"survey_id":"nps","question_id":"score","answer":"{k}"}}' for k in range(11)]
    )
    consent_ids = P.ids_for(['{"marketing_opt_in":false}', '{"marketing_opt_in":true}'])
    wishes = sorted({f"more {k.replace('-', ' ')}" for kws in catalog.keywords for k in kws})
    wish_ids = P.ids_for(
        [f'{{"survey_id":"nps","question_id":"content_request","answer":{js(w)}}}' for w in wishes]
    )
    # pick one random session per user, then thin by probability
    r = rng.random(len(sess))
    o = np.lexsort((r, u))
    firsts = o[np.r_[True, u[o][1:] != u[o][:-1]]]
    cand = sess[firsts]
    cu = s_user[cand]
    t = s_start[cand] + h0[cand] + 2500  # inside the session header
    nps = rng.random(len(cand)) < 0.12
    score = np.clip(
        np.round(7.2 + 1.6 * users.engagement[cu] + rng.normal(0, 1.5, len(cand))), 0, 10
    ).astype(np.int64)
    ev.add(
        ET["survey_response"], t[nps], s_dev[cand][nps], sess=cand[nps], props=nps_ids[score[nps]]
    )
    req = nps & (rng.random(len(cand)) < 0.3)
    ev.add(
        ET["survey_response"],
        t[req] + 1500,
        s_dev[cand][req],
        sess=cand[req],
        props=wish_ids[rng.integers(0, len(wishes), int(req.sum()))],
    )
    consent = (users.signup_day[cu] < 0) & (rng.random(len(cand)) < 0.08)
    ev.add(
        ET["consent_update"],
        t[consent] + 2500,
        s_dev[cand][consent],
        sess=cand[consent],
        props=consent_ids[(rng.random(int(consent.sum())) < 0.4).astype(np.int64)],
    )


def _anonymous(
    rng,
    ev,
    devices,
    first_dev,
    n_anon,
    days,
    lists,
    catalog,
    page_ids,
    click_ids,
    search_ids,
    impression_props,
    sess_base,
) -> None:
    """Visitors who are not logged in: browse, search, click; never play."""
    dev = first_dev + np.arange(n_anon)
    ns = 1 + rng.poisson(0.8, n_anon)
    d = np.repeat(dev, ns)
    n = len(d)
    day = rng.integers(0, days, n)
    offs = np.array([c[1] for c in COUNTRIES])[devices.country[d]] * 3_600_000
    t = day * MS_PER_DAY + local_start_seconds(rng, n) * 1000 - offs.astype(np.int64)
    t = np.where(t < 0, t + MS_PER_DAY, t)
    o = np.lexsort((t, d))
    d, t, day = d[o], t[o], day[o]
    t = shift_apart(d, t, np.full(n, 10 * 60_000), SESSION_MIN_IDLE_MS)
    day = np.minimum(t // MS_PER_DAY, days - 1)
    sess = -(sess_base + 1 + np.arange(n))  # negative: not a user session
    ev.add(ET["page_view"], t, d, sess=sess, props=page_ids[0])
    imp_t = t + 800
    code = np.full(n, R_TRENDING)
    ev.add(ET["rail_impression"], imp_t, d, sess=sess, props=impression_props(code, lists[day, 0]))
    srch = rng.random(n) < 0.3
    st = lists[day[srch], 0, rng.integers(0, RAIL_LEN, int(srch.sum()))]
    ev.add(ET["page_view"], t[srch] + 5000, d[srch], sess=sess[srch], props=page_ids[2])
    ev.add(ET["search"], t[srch] + 12000, d[srch], sess=sess[srch], props=search_ids[0, st])
    clk = rng.random(n) < 0.6
    rank = 1 + weighted_choice(rng, 1.0 / np.arange(1, RAIL_LEN + 1), int(clk.sum()))
    ct = lists[day[clk], 0, rank - 1]
    tc = t[clk] + 20000 + rng.integers(0, 60000, int(clk.sum()))
    ev.add(
        ET["title_click"], tc, d[clk], sess=sess[clk], title=ct, props=click_ids[R_TRENDING, rank]
    )
    ev.add(ET["page_view"], tc + 1200, d[clk], sess=sess[clk], title=ct, props=page_ids[3])


def _bots(
    rng, ev, devices, n_users, days, catalog, page_ids, target, sess_base, play_base
) -> tuple[int, int, dict[str, np.ndarray]]:
    """Devices with implausible activity: scrapers (hundreds of page views an hour) and
    accounts that play non-stop for 20+ hours. Returns (bot devices, bot accounts, their
    playbacks: id, title, device, start time in ms, duration in s)."""
    plays: dict[str, list] = {k: [] for k in _no_plays()}
    if target <= 0 or days < 1:
        return 0, 0, _no_plays()
    day_ms = MS_PER_DAY
    n_dev0 = len(devices.user)
    new_user, new_plat, new_country = [], [], []
    n_bot_users = 0
    player_budget = target // 2 if target >= 1500 else 0  # one non-stop day is ~1300 events
    on_air = np.flatnonzero((catalog.avail_day <= 0) & (catalog.removed_day >= NEVER))
    scraper_budget = target - player_budget
    # non-stop players: back-to-back plays with a heartbeat a minute, ~21 h a day
    if player_budget:
        bot_days = max(1, int(round(player_budget / 1300)))
        n_bots = max(1, int(np.ceil(bot_days / 3)))
        movies = np.flatnonzero(
            (catalog.kind == 0) & (catalog.avail_day < 0) & (catalog.removed_day >= NEVER)
        )
        play_id = play_base
        for b in range(n_bots):  # loop per bot device (a handful)
            nd = min(3, bot_days - 3 * b, days)
            if nd <= 0:
                break
            dev = n_dev0 + len(new_user)
            new_user.append(n_users + n_bot_users)
            n_bot_users += 1
            new_plat.append(3)
            new_country.append(int(rng.integers(len(COUNTRIES))))
            d0 = int(rng.integers(0, days - nd + 1))
            t_begin = d0 * day_ms + int(rng.integers(0, 3 * 3_600_000))
            t_stop = t_begin + nd * day_ms - int(rng.integers(2, 4) * 3_600_000)
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
            h = (dur - 1) // HEARTBEAT_INTERVAL_S
            hp = np.repeat(np.arange(len(ti)), h)
            hk = np.arange(len(hp)) - np.repeat(np.cumsum(h) - h, h) + 1
            ev.add(
                ET["heartbeat"],
                st[hp] + hk * HEARTBEAT_INTERVAL_S * 1000,
                dev,
                sess=sess,
                play=pids[hp],
                title=ti[hp],
                pos=hk * HEARTBEAT_INTERVAL_S,
            )
            ev.add(ET["complete"], st + dur * 1000, dev, sess=sess, play=pids, title=ti, pos=dur)
            for k, v in (("play", pids), ("title", ti), ("dev", np.full(len(ti), dev))):
                plays[k].append(v)
            plays["start"].append(st)
            plays["dur"].append(dur)
    # scrapers: anonymous devices requesting title pages every few seconds
    if scraper_budget > 0:
        per_hour = int(rng.integers(300, 700))
        n_scr = max(1, int(np.ceil(scraper_budget / (per_hour * 8))))
        each = int(np.ceil(scraper_budget / n_scr))
        left = scraper_budget
        for b in range(n_scr):  # loop per bot device (a handful)
            m = min(left, each)
            if m <= 0:
                break
            left -= m
            dev = n_dev0 + len(new_user)
            new_user.append(-1)
            new_plat.append(0)
            new_country.append(int(rng.integers(len(COUNTRIES))))
            t_begin = int(rng.integers(0, days)) * day_ms + int(rng.integers(0, 12 * 3_600_000))
            step = 3_600_000 // per_hour
            t = t_begin + np.arange(m) * step + rng.integers(0, step // 2, m)
            ti = on_air[rng.integers(0, len(on_air), m)]
            sess = -(sess_base + 20_000_000 + b + 1)
            ev.add(ET["page_view"], t, dev, sess=sess, title=ti, props=page_ids[3])
    n_new = len(new_user)
    if n_new:
        plat = np.array(new_plat)
        version, _ = _device_versions(rng, plat)
        devices.user = np.concatenate([devices.user, np.array(new_user)])
        devices.platform = np.concatenate([devices.platform, plat])
        devices.version = np.concatenate([devices.version, version])
        devices.country = np.concatenate([devices.country, np.array(new_country)])
        devices.bot = np.concatenate([devices.bot, np.ones(n_new, dtype=bool)])
    bot_plays = {
        k: (np.concatenate(v).astype(np.int64) if v else np.zeros(0, dtype=np.int64))
        for k, v in plays.items()
    }
    return n_new, n_bot_users, bot_plays
