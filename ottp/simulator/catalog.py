"""Title catalog for the event simulator (private).

The catalog is built per category: the categories are the contract's
(``ottp.contract.rules.title_categories``: ``seeds/categories.csv``). A title is a
movie or one episode of a series; movies and series are the *items* users
choose between. Every item belongs to one of ``N_CLUSTERS`` sub-genres of its
category (each with its own keywords), which carries the per-user taste
component beyond category preference.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ottp.simulator.arrays import NEVER
from ottp.simulator.genres import (
    N_CLUSTERS,
    NAME_SUFFIXES,
    category_keywords,
    category_weights,
    name_words,
    profile,
)

RELEASE_WEEKDAYS = (2, 4, 6)  # new episodes come out on Wednesdays, Fridays and Sundays


def _release_day(rng: np.random.Generator, start: dt.date, lo: int, hi: int) -> int:
    """A day offset in [lo, hi], on a release weekday when one is in range."""
    days = [
        d for d in range(lo, hi + 1) if (start + dt.timedelta(days=d)).weekday() in RELEASE_WEEKDAYS
    ]
    if not days:
        days = list(range(lo, hi + 1))
    return int(days[rng.integers(len(days))])


def load_cancel_reasons(seeds_dir: Path) -> list[str]:
    """The unsubscribe survey's reason codes, from ``seeds/cancel_reasons.csv``."""
    with open(seeds_dir / "cancel_reasons.csv", newline="", encoding="utf-8") as f:
        codes = [row["reason_code"].strip() for row in csv.DictReader(f) if row.get("reason_code")]
    if not codes:
        raise ValueError(f"no reason codes in {seeds_dir / 'cancel_reasons.csv'}")
    return codes


@dataclass
class Catalog:
    categories: list[str]
    start: dt.date
    days: int
    # per title (index = title number - 1, ordered by availability)
    cat: np.ndarray
    kind: np.ndarray  # 0 movie, 1 episode
    series: np.ndarray  # series index or -1
    season: np.ndarray
    episode: np.ndarray
    ordinal: np.ndarray  # position in the series' watch order, -1 for movies
    duration: np.ndarray  # seconds
    release_year: np.ndarray
    avail_day: np.ndarray  # day offset from start (negative: before the window)
    removed_day: np.ndarray  # day offset from which it is unavailable (NEVER)
    pop: np.ndarray  # item popularity
    quality: np.ndarray
    cluster: np.ndarray
    names: list[str]
    keywords: list[list[str]]
    # per series
    s_cat: np.ndarray
    s_cluster: np.ndarray
    s_pop: np.ndarray
    s_offsets: np.ndarray  # CSR into s_titles
    s_titles: np.ndarray  # title indexes in watch order
    s_names: list[str]
    id_width: int = 5
    series_width: int = 4
    snapshot_days: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.cat)

    @property
    def n_series(self) -> int:
        return len(self.s_cat)

    def available(self, title: np.ndarray, day: np.ndarray, margin: int = 0) -> np.ndarray:
        return (self.avail_day[title] <= day) & (self.removed_day[title] > day + margin)

    def episodes_released(self, series: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Number of episodes of each series released by ``day`` (episodes release in order)."""
        s = series.astype(np.int64)
        big = np.int64(4 * NEVER)
        ep_days = self.avail_day[self.s_titles].astype(np.int64)
        owner = np.repeat(np.arange(self.n_series, dtype=np.int64), np.diff(self.s_offsets))
        keys = owner * big + (ep_days + NEVER)
        q = s * big + (day.astype(np.int64) + NEVER)
        return np.searchsorted(keys, q, side="right") - self.s_offsets[s]


def build_catalog(
    rng: np.random.Generator, categories: list[str], n_titles: int, start: dt.date, days: int
) -> Catalog:
    C = len(categories)
    if n_titles < C:
        raise ValueError(f"titles must be at least the number of categories ({C})")
    weights = category_weights(categories)
    alloc = np.ones(C, dtype=np.int64) + rng.multinomial(n_titles - C, weights)
    window = _Window(start, days)
    rows: list[dict] = []  # one per title (Python loop per title/series is fine: catalog-sized)
    s_rows: list[dict] = []
    for c, cat in enumerate(categories):
        tc = int(alloc[c])
        n_ep = int(round(tc * profile(cat)[1])) if tc >= 4 else 0
        _add_series(rng, window, c, cat, n_ep, rows, s_rows)
        _add_movies(rng, window, c, cat, tc - n_ep, rows)

    n = len(rows)
    # title ids follow the order titles became available (ties: series, then order, then random)
    series = np.array([r["series"] for r in rows], dtype=np.int32)
    avail = np.array([r["avail"] for r in rows], dtype=np.int32)
    ordinal = np.array([r["ordinal"] for r in rows], dtype=np.int32)
    order = np.lexsort((rng.random(n), ordinal, series, avail))
    rows = [rows[i] for i in order]
    # series numbering by first availability
    seen: dict[int, int] = {}
    for r in rows:
        if r["series"] >= 0 and r["series"] not in seen:
            seen[r["series"]] = len(seen)
    s_rows = [s_rows[i] for i in sorted(seen, key=seen.get)]
    for r in rows:
        r["series"] = seen[r["series"]] if r["series"] >= 0 else -1
    catalog = _assemble(rows, s_rows, categories, start, days)
    catalog.removed_day = _removals(rng, rows, catalog.avail_day)
    catalog.names, catalog.keywords, catalog.release_year = _names_keywords_years(
        rng, rows, s_rows, catalog
    )
    snap = {0}
    snap.update(int(d) for d in catalog.avail_day if 0 < d < days)
    snap.update(int(d) for d in catalog.removed_day if 0 < d < days)
    catalog.snapshot_days = sorted(snap)
    return catalog


@dataclass(frozen=True)
class _Window:
    start: dt.date
    days: int

    @property
    def weeks(self) -> int:
        """Weekly release slots that fit in the window."""
        return (self.days - 1) // 7 + 1

    @property
    def releases_inside(self) -> bool:
        """Titles are released inside the window only when it spans more than a week."""
        return self.days >= 8


def _series_shape(
    rng: np.random.Generator, w: _Window, cat: str, remaining: int
) -> tuple[int, int, str]:
    """Episodes per season, episodes in the catalog and status of one new series."""
    fmt = rng.random()
    if fmt < 0.25:  # limited series
        eps_per, n_seasons = int(rng.integers(6, 11)), 1
    elif fmt < 0.75:  # a few seasons
        eps_per = int(rng.integers(8, 11)) if cat != "kids" else int(rng.integers(10, 16))
        n_seasons = int(min(4, rng.geometric(0.5)))
    else:  # long-running show (sitcoms, soaps, anime, kids, reality)
        eps_per, n_seasons = int(rng.integers(12, 25)), int(rng.integers(3, 9))
    u = rng.random()
    status = "ended"
    if w.releases_inside and u < 0.10:
        status = "premiere"  # a new series: one season, released weekly in the window
        n = min(remaining, eps_per, w.weeks)
    else:
        n = min(remaining, eps_per * n_seasons)
        if w.releases_inside and u < 0.45 and (n - 1) % eps_per + 1 >= 2:
            status = "running"  # the last season is still being released weekly
    if 0 < remaining - n < 4 and status != "premiere":
        n = remaining
        if status == "running" and (n - 1) % eps_per + 1 < 2:
            status = "ended"
    return eps_per, n, status


def _series_row(rng: np.random.Generator, c: int, cat: str, status: str) -> dict:
    pop = float(rng.lognormal(0.0, 1.1)) * (1.6 if status != "ended" else 1.0)
    s_cluster = int(rng.integers(N_CLUSTERS))
    ck = category_keywords(cat)
    own = ck[3 * s_cluster : 3 * s_cluster + 3]
    s_kw = [own[j] for j in sorted(rng.choice(3, 2, replace=False))]
    s_kw.append(ck[rng.integers(len(ck))])
    return dict(
        cat=c,
        cluster=s_cluster,
        pop=pop,
        keywords=list(dict.fromkeys(s_kw)),
        quality=float(rng.normal(0, 0.35)),
        status=status,
        name="The " + name_words(rng),
    )


def _episode_days(
    rng: np.random.Generator, w: _Window, season: np.ndarray, status: str
) -> np.ndarray:
    """Release schedule: weekly within a season, ~a year between seasons."""
    n = len(season)
    gap = np.zeros(n, dtype=np.int64)
    gap[1:] = np.where(season[1:] != season[:-1], rng.integers(250, 420), 7)
    rel = np.cumsum(gap)
    if status == "premiere":
        first = _release_day(rng, w.start, 0, w.days - 7 * (n - 1) - 1)
        return first + rel
    if status == "running":
        last_season_n = int((season == season[-1]).sum())
        k_in = int(min(last_season_n - 1, rng.integers(1, last_season_n), w.weeks))
        k_in = max(k_in, 1)
        first_in = _release_day(rng, w.start, 0, min(6, w.days - 1 - 7 * (k_in - 1)))
        # episode n-k_in is released on first_in; the rest follow weekly
        return rel - rel[n - k_in] + first_in
    last = -int(rng.integers(14, 2500))
    return rel - rel[-1] + last


def _add_series(
    rng: np.random.Generator,
    w: _Window,
    c: int,
    cat: str,
    n_ep: int,
    rows: list[dict],
    s_rows: list[dict],
) -> None:
    """Series of category ``c`` until ``n_ep`` episodes: a row per series and per episode."""
    ep_minutes = profile(cat)[2]
    remaining = n_ep
    while remaining > 0:
        eps_per, n, status = _series_shape(rng, w, cat, remaining)
        remaining -= n
        sidx = len(s_rows)
        base_min = float(rng.choice(ep_minutes))
        s_rows.append(_series_row(rng, c, cat, status))
        season = np.arange(n) // eps_per + 1
        episode = np.arange(n) % eps_per + 1
        avail = _episode_days(rng, w, season, status)
        dur = np.clip(base_min * 60 * rng.normal(1.0, 0.06, n), 20 * 60, 60 * 60).astype(np.int64)
        for i in range(n):
            rows.append(
                dict(
                    cat=c,
                    kind=1,
                    series=sidx,
                    season=int(season[i]),
                    episode=int(episode[i]),
                    ordinal=i,
                    duration=int(dur[i]),
                    avail=int(avail[i]),
                )
            )


def _add_movies(
    rng: np.random.Generator, w: _Window, c: int, cat: str, n_mov: int, rows: list[dict]
) -> None:
    """``n_mov`` movies of category ``c``; the first one is its always-available fallback."""
    if not n_mov:
        return
    mins = rng.normal(105, 17, n_mov)
    if cat in ("kids", "animation", "documentary"):
        mins = rng.normal(92, 8, n_mov)
    dur = np.clip(mins * 60, 80 * 60, 150 * 60).astype(np.int64)
    new = (rng.random(n_mov) < 0.08) & w.releases_inside
    new[0] = False  # the category's always-available fallback movie
    fridays = [d for d in range(1, w.days) if (w.start + dt.timedelta(days=d)).weekday() == 4]
    for i in range(n_mov):
        if new[i] and fridays:
            avail = int(fridays[rng.integers(len(fridays))])
        else:
            avail = -int(rng.integers(1, 2500))
        pop = float(rng.lognormal(0.0, 1.1)) * (2.5 if avail >= 0 else 1.0)
        if i == 0:
            pop = max(pop, 3.0)
        rows.append(
            dict(
                cat=c,
                kind=0,
                series=-1,
                season=0,
                episode=0,
                ordinal=-1,
                duration=int(dur[i]),
                avail=avail,
                pop=pop,
                quality=float(rng.normal(0, 0.35)),
                cluster=int(rng.integers(N_CLUSTERS)),
                fallback=i == 0,
            )
        )


def _assemble(
    rows: list[dict], s_rows: list[dict], categories: list[str], start: dt.date, days: int
) -> Catalog:
    """The catalog's arrays from title rows in id order; removals, names, keywords and
    release years are filled in afterwards."""
    n = len(rows)
    kind = np.array([r["kind"] for r in rows], dtype=np.int8)
    series = np.array([r["series"] for r in rows], dtype=np.int32)
    ordinal = np.array([r["ordinal"] for r in rows], dtype=np.int32)
    pop = np.empty(n)
    quality = np.empty(n, dtype=np.float32)
    cluster = np.empty(n, dtype=np.int8)
    for i, r in enumerate(rows):
        src = r if r["kind"] == 0 else s_rows[series[i]]  # episodes take their series' values
        pop[i], quality[i], cluster[i] = src["pop"], src["quality"], src["cluster"]
    # series CSR in watch order
    eps = np.flatnonzero(kind == 1)
    eps = eps[np.lexsort((ordinal[eps], series[eps]))]
    counts = np.bincount(series[eps], minlength=len(s_rows))
    s_offsets = np.zeros(len(s_rows) + 1, dtype=np.int64)
    s_offsets[1:] = np.cumsum(counts)
    return Catalog(
        categories=categories,
        start=start,
        days=days,
        cat=np.array([r["cat"] for r in rows], dtype=np.int16),
        kind=kind,
        series=series,
        season=np.array([r["season"] for r in rows], dtype=np.int32),
        episode=np.array([r["episode"] for r in rows], dtype=np.int32),
        ordinal=ordinal,
        duration=np.array([r["duration"] for r in rows], dtype=np.int32),
        release_year=np.empty(n, dtype=np.int32),
        avail_day=np.array([r["avail"] for r in rows], dtype=np.int32),
        removed_day=np.full(n, NEVER, dtype=np.int32),
        pop=pop,
        quality=quality,
        cluster=cluster,
        names=[],
        keywords=[],
        s_cat=np.array([s["cat"] for s in s_rows], dtype=np.int16),
        s_cluster=np.array([s["cluster"] for s in s_rows], dtype=np.int8),
        s_pop=np.array([s["pop"] for s in s_rows]),
        s_offsets=s_offsets,
        s_titles=eps.astype(np.int64),
        s_names=[s["name"] for s in s_rows],
        id_width=max(5, len(str(n))),
        series_width=max(4, len(str(len(s_rows)))),
    )


def _removals(rng: np.random.Generator, rows: list[dict], avail: np.ndarray) -> np.ndarray:
    """A few movies leave the catalog on a release day inside the window."""
    removed = np.full(len(rows), NEVER, dtype=np.int32)
    release_days = sorted({int(d) for d in avail if d > 0})
    if release_days:
        cand = np.array(
            [
                i
                for i, r in enumerate(rows)
                if r["kind"] == 0 and r["avail"] < 0 and not r.get("fallback")
            ],
            dtype=np.int64,
        )
        if len(cand):
            pick = cand[rng.random(len(cand)) < 0.025]
            removed[pick] = np.array(release_days)[rng.integers(0, len(release_days), len(pick))]
    return removed


def _names_keywords_years(
    rng: np.random.Generator, rows: list[dict], s_rows: list[dict], catalog: Catalog
) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Title names, keywords and release years (an episode's: its season's first release)."""
    kind, series, cat, cluster = catalog.kind, catalog.series, catalog.cat, catalog.cluster
    season_arr, episode_arr, avail = catalog.season, catalog.episode, catalog.avail_day
    start, n = catalog.start, catalog.n
    names: list[str] = []
    keywords: list[list[str]] = []
    release_year = np.empty(n, dtype=np.int32)
    season_first: dict[tuple[int, int], int] = {}
    for i in range(n):
        if kind[i] == 1:
            key = (int(series[i]), int(season_arr[i]))
            season_first[key] = min(season_first.get(key, NEVER), int(avail[i]))
    for i in range(n):
        ck = category_keywords(catalog.categories[cat[i]])
        own = ck[3 * int(cluster[i]) : 3 * int(cluster[i]) + 3]
        if kind[i] == 1:
            s = s_rows[series[i]]
            names.append(f"{s['name']} S{season_arr[i]}E{episode_arr[i]:02d}")
            kw = s["keywords"]
            first = season_first[(int(series[i]), int(season_arr[i]))]
            release_year[i] = (start + dt.timedelta(days=first)).year
        else:
            words = name_words(rng)
            names.append(words + NAME_SUFFIXES[rng.integers(len(NAME_SUFFIXES))])
            kw = [own[j] for j in sorted(rng.choice(3, 2, replace=False))]
            if rng.random() < 0.6:
                kw.append(ck[rng.integers(len(ck))])
            avail_year = (start + dt.timedelta(days=int(avail[i]))).year
            release_year[i] = max(1960, avail_year - int(rng.geometric(0.25)) + 1)
        keywords.append(list(dict.fromkeys(kw)))
    return names, keywords, release_year


def title_id(catalog: Catalog, i: int) -> str:
    return f"t_{i + 1:0{catalog.id_width}d}"


def write_catalog(catalog: Catalog, out_dir: Path) -> list[Path]:
    """One full snapshot on the start date and on every day titles are released or removed."""
    start = catalog.start
    prefixes: list[bytes] = []
    for i in range(catalog.n):
        ep = catalog.kind[i] == 1
        rec = {
            "title_id": title_id(catalog, i),
            "name": catalog.names[i],
            "category": catalog.categories[catalog.cat[i]],
            "keywords": catalog.keywords[i],
            "kind": "episode" if ep else "movie",
            "series_id": f"s_{catalog.series[i] + 1:0{catalog.series_width}d}" if ep else None,
            "season": int(catalog.season[i]) if ep else None,
            "episode": int(catalog.episode[i]) if ep else None,
            "duration_s": int(catalog.duration[i]),
            "release_year": int(catalog.release_year[i]),
            "available_from": (start + dt.timedelta(days=int(catalog.avail_day[i]))).isoformat(),
        }
        s = json.dumps(rec, separators=(",", ":"), ensure_ascii=True)
        prefixes.append(s[:-1].encode() + b',"is_available":')
    files = []
    for d in catalog.snapshot_days:
        day = start + dt.timedelta(days=d)
        folder = out_dir / "catalog" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        released = np.flatnonzero(catalog.avail_day <= d).tolist()
        on = (catalog.removed_day > d).tolist()
        data = b"".join(prefixes[i] + (b"true}\n" if on[i] else b"false}\n") for i in released)
        path = folder / "titles.ndjson.gz"
        with (
            open(path, "wb") as f,
            gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0, filename="") as gz,
        ):
            gz.write(data)
        files.append(path)
    return files
