"""Events of people's sessions other than the player's (private): lifecycle steps (signup,
subscribe, cancel, reactivate, deletion), the home page and its rails, browse-only clicks,
surveys and consent changes, the navigation before each play and the interest after it.

Each function appends to the ``Events`` buffer; the order of the calls is the order of the
events in the buffer and of the fragments in the ``Props`` registry, so it is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ottp.simulator.arrays import MS_PER_DAY, weighted_choice
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import ET, RATING_MAX, RATING_MIN, Events, Props, js
from ottp.simulator.playback import Plays
from ottp.simulator.rails import (
    PAGE_ACCOUNT,
    PAGE_HOME,
    PAGE_SEARCH,
    PAGE_TITLE,
    R_TRENDING,
    RAIL_FIXED,
    NavigationProps,
    PlayRails,
    rail_with_title,
    rank_weights,
)
from ottp.simulator.sessions import (
    CANCELLATION,
    DELETION,
    REACTIVATION,
    SIGNUP,
    Sessions,
    SessionTimes,
)
from ottp.simulator.timelines import INTEREST, Placement, PlayTimeline
from ottp.simulator.viewers import PLANS, Users

SIGNUP_METHODS = ("email", "google", "apple")
SIGNUP_METHOD_WEIGHTS = (0.6, 0.25, 0.15)
SHARE_CHANNELS = ("whatsapp", "copy_link", "messages", "facebook", "x", "email")
SHARE_CHANNEL_WEIGHTS = (0.35, 0.3, 0.15, 0.1, 0.05, 0.05)
CONSENT_BODIES = ('{"marketing_opt_in":false}', '{"marketing_opt_in":true}')


@dataclass
class SessionScene:
    """What the session event functions read: the sessions as placed in the window."""

    ev: Events
    P: Props
    nav: NavigationProps
    users: Users
    catalog: Catalog
    sessions: Sessions
    times: SessionTimes
    placed: Placement
    sel: np.ndarray  # sessions that start inside the window


def lifecycle_events(rng: np.random.Generator, sc: SessionScene, reasons: list[str]) -> None:
    ev, P, s, tm = sc.ev, sc.P, sc.sessions, sc.times
    s_start, s_dev, sel, users = sc.placed.s_start, s.dev, sc.sel, sc.users
    page_ids = sc.nav.page_ids
    plan_ids = P.ids_for(['{"plan":' + js(p) + "}" for p in PLANS])
    method_ids = P.ids_for(['{"method":' + js(m) + "}" for m in SIGNUP_METHODS])
    consent_ids = P.ids_for(list(CONSENT_BODIES))
    a = sel[s.kind[sel] == SIGNUP]
    u = s.user[a]
    method = weighted_choice(rng, SIGNUP_METHOD_WEIGHTS, len(a))
    ev.add(ET["signup"], s_start[a], s_dev[a], sess=a, props=method_ids[method])
    ev.add(
        ET["subscribe"], s_start[a] + tm.t_sub[a], s_dev[a], sess=a, props=plan_ids[users.plan[u]]
    )
    opt_in = (rng.random(len(a)) < 0.45).astype(np.int64)
    ev.add(
        ET["consent_update"],
        s_start[a] + tm.t_consent[a],
        s_dev[a],
        sess=a,
        props=consent_ids[opt_in],
    )
    a = sel[s.kind[sel] == REACTIVATION]
    ev.add(ET["reactivate"], s_start[a], s_dev[a], sess=a, props=plan_ids[users.plan[s.user[a]]])
    a = sel[s.kind[sel] == CANCELLATION]
    u = s.user[a]
    cancel_ids = np.array(
        [[P.id(f'{{"reason":{js(rc)},"plan":{js(pn)}}}') for pn in PLANS] for rc in reasons]
    )
    survey_reason_ids = P.ids_for(
        [
            f'{{"survey_id":"unsubscribe","question_id":"reason","answer":{js(rc)}}}'
            for rc in reasons
        ]
    )
    ev.add(ET["page_view"], s_start[a], s_dev[a], sess=a, props=page_ids[PAGE_ACCOUNT])
    cancel_props = cancel_ids[users.reason[u], users.plan[u]]
    ev.add(ET["cancel"], s_start[a] + tm.t_cancel[a], s_dev[a], sess=a, props=cancel_props)
    survey_props = survey_reason_ids[users.reason[u]]
    ev.add(ET["survey_response"], s_start[a] + tm.t_survey[a], s_dev[a], sess=a, props=survey_props)
    a = sel[s.kind[sel] == DELETION]
    ev.add(ET["page_view"], s_start[a], s_dev[a], sess=a, props=page_ids[PAGE_ACCOUNT])
    ev.add(ET["deletion_request"], s_start[a] + tm.t_delete[a], s_dev[a], sess=a)


def home_page_events(sc: SessionScene) -> None:
    """The home page and one or two rails at the start of every viewing session."""
    ev, s, nav = sc.ev, sc.sessions, sc.nav
    s_start, s_dev, h0 = sc.placed.s_start, s.dev, sc.times.h0
    a = sc.sel[s.regular[sc.sel]]
    ev.add(ET["page_view"], s_start[a] + h0[a], s_dev[a], sess=a, props=nav.page_ids[PAGE_HOME])
    top_cat = np.argmax(sc.users.pref, axis=1)
    for j in range(2):
        b = a[sc.times.n_fill[a] > j]
        code = (
            np.full(len(b), R_TRENDING)
            if j == 0
            else len(RAIL_FIXED) + top_cat[s.user[b]].astype(np.int64)
        )
        key = nav.list_key(code, np.full(len(b), -1))
        titles = nav.lists[sc.placed.s_day[b], key]
        ev.add(
            ET["rail_impression"],
            s_start[b] + h0[b] + 400 + 600 * j,
            s_dev[b],
            sess=b,
            props=nav.impressions(code, titles),
        )


def browse_only_events(rng: np.random.Generator, sc: SessionScene) -> None:
    """Sessions without a play: sometimes a click on the trending rail and a watchlist add."""
    ev, nav, tm = sc.ev, sc.nav, sc.times
    s_start, s_dev = sc.placed.s_start, sc.sessions.dev
    b = sc.sel[tm.bo_click[sc.sel]]
    brank = 1 + weighted_choice(rng, rank_weights(), len(b))
    bt = nav.lists[sc.placed.s_day[b], 0, brank - 1]
    t_click = s_start[b] + tm.bo_t_click[b]
    click_props = nav.click_ids[R_TRENDING, brank]
    ev.add(ET["title_click"], t_click, s_dev[b], sess=b, title=bt, props=click_props)
    title_page = nav.page_ids[PAGE_TITLE]
    ev.add(ET["page_view"], t_click + 1000, s_dev[b], sess=b, title=bt, props=title_page)
    w = tm.bo_watch[b]
    t_watch = s_start[b][w] + tm.bo_t_watch[b][w]
    ev.add(ET["add_to_watchlist"], t_watch, s_dev[b][w], sess=b[w], title=bt[w])


def survey_events(rng: np.random.Generator, sc: SessionScene) -> None:
    """NPS and content-request survey answers and consent changes, at most one of each per user."""
    sess = sc.sel[sc.sessions.regular[sc.sel]]
    if len(sess) == 0:
        return
    ev, P, users, catalog = sc.ev, sc.P, sc.users, sc.catalog
    s_user, s_dev = sc.sessions.user, sc.sessions.dev
    u = s_user[sess]
    nps_ids = P.ids_for(
        [f'{{"survey_id":"nps","question_id":"score","answer":"{k}"}}' for k in range(11)]
    )
    consent_ids = P.ids_for(list(CONSENT_BODIES))
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
    t = sc.placed.s_start[cand] + sc.times.h0[cand] + 2500  # inside the session header
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


def play_navigation_events(
    rng: np.random.Generator,
    sc: SessionScene,
    plays: Plays,
    rails: PlayRails,
    tl: PlayTimeline,
    pi: np.ndarray,
    days: int,
) -> None:
    """Before each play (rows ``pi``): home page, search, the rail, the click, the title page."""
    ev, nav = sc.ev, sc.nav
    pl_t0, pl_dev, pl_sess, pl_title = sc.placed.pl_t0, sc.placed.pl_dev, plays.sess, plays.title
    a = pi[(plays.k[pi] > 0) & ~rails.autoplay[pi]]
    home = nav.page_ids[PAGE_HOME]
    ev.add(ET["page_view"], pl_t0[a] + tl.t_pv_home[a], pl_dev[a], sess=pl_sess[a], props=home)
    a = pi[rails.search[pi]]
    qv = (rng.random(len(a)) < 0.5).astype(np.int64)
    query = nav.search_ids[qv, pl_title[a]]
    ev.add(ET["search"], pl_t0[a] + tl.t_search[a], pl_dev[a], sess=pl_sess[a], props=query)
    search_page = nav.page_ids[PAGE_SEARCH]
    t_page = pl_t0[a] + tl.t_pv_search[a]
    ev.add(ET["page_view"], t_page, pl_dev[a], sess=pl_sess[a], props=search_page)
    a = pi[tl.has_imp[pi]]
    dday = np.minimum(pl_t0[a] // MS_PER_DAY, days - 1)
    rail, rank = rails.rail, rails.rank
    key = nav.list_key(rail[a], pl_title[a])
    titles = rail_with_title(nav.lists, dday, key, pl_title[a], rank[a])
    ev.add(
        ET["rail_impression"],
        pl_t0[a] + tl.t_imp[a],
        pl_dev[a],
        sess=pl_sess[a],
        props=nav.impressions(rail[a], titles),
    )
    ev.add(
        ET["title_click"],
        pl_t0[pi] + tl.t_click[pi],
        pl_dev[pi],
        sess=pl_sess[pi],
        title=pl_title[pi],
        props=nav.click_ids[rail[pi], rank[pi]],
    )
    a = pi[tl.pv_title[pi]]
    ev.add(
        ET["page_view"],
        pl_t0[a] + tl.t_pvt[a],
        pl_dev[a],
        sess=pl_sess[a],
        title=pl_title[a],
        props=nav.page_ids[PAGE_TITLE],
    )


def interest_events(
    rng: np.random.Generator, sc: SessionScene, plays: Plays, tl: PlayTimeline, pi: np.ndarray
) -> None:
    """Likes, dislikes, ratings, watchlist adds and shares after the plays ``pi``."""
    P, base, pl_dev = sc.P, sc.placed.play_start, sc.placed.pl_dev
    rating_ids = P.ids_for([f'{{"rating":{k}}}' for k in range(RATING_MIN, RATING_MAX + 1)])
    share_ids = P.ids_for(['{"channel":' + js(c) + "}" for c in SHARE_CHANNELS])
    for j, name in enumerate(INTEREST):
        a = pi[tl.interest[pi, j]]
        pr = -1
        if name == "rating":
            pr = rating_ids[tl.stars[a] - RATING_MIN]
        elif name == "share":
            pr = share_ids[weighted_choice(rng, SHARE_CHANNEL_WEIGHTS, len(a))]
        sc.ev.add(
            ET[name],
            base[a] + tl.post_t[a, j],
            pl_dev[a],
            sess=plays.sess[a],
            title=plays.title[a],
            props=pr,
        )
