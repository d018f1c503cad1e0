"""Rails and navigation (private): the lists of titles each rail shows per day, the rail and
rank a play is clicked from, and the ``properties`` fragments of navigation events (pages,
rails, clicks, searches) registered in the order the event stage needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ottp.simulator.arrays import fixed_width_strings, id_strings, weighted_choice
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import Props, js
from ottp.simulator.playback import Plays
from ottp.simulator.sessions import Sessions

PAGES = ("home", "browse", "search", "title", "account")
PAGE_HOME, PAGE_BROWSE, PAGE_SEARCH, PAGE_TITLE, PAGE_ACCOUNT = range(len(PAGES))
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


def rank_weights() -> np.ndarray:
    """Clicks by rank fall off as 1/rank."""
    return 1.0 / np.arange(1, RAIL_LEN + 1)


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


@dataclass
class PlayRails:
    """How each play was started: the rail and rank clicked, or autoplay of the next episode."""

    autoplay: np.ndarray
    search: np.ndarray  # found through a search first
    rail: np.ndarray  # index into NavigationProps.rail_names
    rank: np.ndarray  # 1-based


def choose_rails(
    rng: np.random.Generator, plays: Plays, sessions: Sessions, catalog: Catalog
) -> PlayRails:
    NPL, pl_title, pl_cont = plays.n, plays.title, plays.cont
    prev_title = np.r_[-1, pl_title[:-1]]
    autoplay = (
        (plays.k > 0)
        & (catalog.kind[pl_title] == 1)
        & (catalog.kind[prev_title] == 1)
        & (catalog.series[pl_title] == catalog.series[np.maximum(prev_title, 0)])
        & (catalog.ordinal[pl_title] == catalog.ordinal[np.maximum(prev_title, 0)] + 1)
    )
    r = rng.random(NPL)
    resume_series = (catalog.kind[pl_title] == 1) & (catalog.ordinal[pl_title] > 0) & (r < 0.7)
    search = ~autoplay & ~pl_cont & ~resume_series & (rng.random(NPL) < 0.1)
    recent = catalog.avail_day[pl_title] >= sessions.day[plays.sess] - 30
    rail = np.select(
        [autoplay, pl_cont | resume_series, search, r < 0.3, (r < 0.45) & recent, r < 0.7],
        [R_UPNEXT, R_CONTINUE, R_SEARCH, R_TRENDING, R_NEW, R_BYW],
        len(RAIL_FIXED) + catalog.cat[pl_title].astype(np.int64),
    )
    rank = np.where(
        rail == R_CONTINUE,
        1 + (rng.random(NPL) < 0.3),
        1 + weighted_choice(rng, rank_weights(), NPL),
    )
    rank = np.where(rail == R_UPNEXT, 1, rank)
    return PlayRails(autoplay=autoplay, search=search, rail=rail, rank=rank)


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


class NavigationProps:
    """``properties`` of navigation events: pages, rail clicks, searches, rail impressions."""

    def __init__(self, P: Props, catalog: Catalog, days: int):
        self.P = P
        self.catalog = catalog
        self.page_ids = P.ids_for(['{"page":' + js(p) + "}" for p in PAGES])
        self.rail_names = list(RAIL_FIXED) + [f"category:{c}" for c in catalog.categories]
        self.click_ids = P.ids_for(
            [
                f'{{"rail":{js(rn)},"rank":{rk}}}'
                for rn in self.rail_names
                for rk in range(RAIL_LEN + 1)
            ]
        ).reshape(len(self.rail_names), RAIL_LEN + 1)
        self.lists = rail_lists(catalog, days)
        self.tid_q = _quoted_title_ids(catalog)
        self.search_ids = _search_props(P, catalog)

    def impressions(self, rail_codes: np.ndarray, titles: np.ndarray) -> np.ndarray:
        """One ``{"rail":...,"title_ids":[...]}`` fragment per row of ``titles``."""
        quoted = self.tid_q[titles]  # (rows, rail length, id width): rows may be 0
        mat = quoted.reshape(quoted.shape[0], int(np.prod(quoted.shape[1:])))[:, :-1]
        body = fixed_width_strings(np.ascontiguousarray(mat))
        rn = pa.array(self.rail_names).take(pa.array(rail_codes))
        frag = pc.binary_join_element_wise(
            ',"properties":{"rail":"', rn, '","title_ids":[', body, "]}", ""
        )
        return self.P.add_chunk(frag)

    def list_key(self, rail_code: np.ndarray, title: np.ndarray) -> np.ndarray:
        """Which of the day's lists (see :func:`rail_lists`) a rail shows."""
        return np.select(
            [
                rail_code == R_TRENDING,
                rail_code == R_CONTINUE,
                rail_code == R_NEW,
                rail_code >= len(RAIL_FIXED),
            ],
            [0, 0, 1, 2 + rail_code - len(RAIL_FIXED)],
            2 + self.catalog.cat[np.maximum(title, 0)].astype(np.int64),
        )
