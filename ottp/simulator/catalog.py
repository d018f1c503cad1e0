"""Title catalog for the event simulator (private).

The catalog is built per category from ``seeds/categories.csv``. A title is a
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

N_CLUSTERS = 4

# title share, episode share, typical episode minutes, keywords (3 for each sub-genre)
# fmt: off
_PROFILES: dict[str, tuple[float, float, tuple[int, ...], tuple[str, ...]]] = {
    "action": (0.11, 0.35, (42, 50, 55), (
        "heist", "car-chase", "explosions", "martial-arts", "revenge", "bounty-hunter", "spy",
        "military", "mercenary", "superhero", "disaster", "survival",
    )),
    "comedy": (0.14, 0.60, (22, 25, 30), (
        "sitcom", "workplace", "family-comedy", "stand-up", "sketch", "satire",
        "romantic-comedy", "buddy", "road-trip", "dark-comedy", "parody", "slapstick",
    )),
    "drama": (0.16, 0.60, (45, 52, 58), (
        "family", "coming-of-age", "melodrama", "legal", "medical", "political", "period",
        "historical", "biopic", "social-issues", "addiction", "literary",
    )),
    "thriller": (0.10, 0.45, (42, 48, 55), (
        "crime", "detective", "whodunit", "psychological", "mystery", "noir", "conspiracy",
        "espionage", "cyber", "serial-killer", "hostage", "courtroom",
    )),
    "horror": (0.06, 0.30, (40, 45, 50), (
        "haunted-house", "ghost", "possession", "zombie", "slasher", "creature", "vampire",
        "occult", "folk-horror", "found-footage", "monster", "supernatural",
    )),
    "scifi": (0.07, 0.50, (45, 50, 58), (
        "space", "space-opera", "aliens", "time-travel", "clones", "virtual-reality",
        "dystopia", "post-apocalyptic", "cyberpunk", "robots", "androids", "first-contact",
    )),
    "romance": (0.06, 0.35, (30, 42, 48), (
        "wedding", "holiday", "summer", "love-triangle", "forbidden-love", "period-romance",
        "second-chance", "reunion", "long-distance", "teen-romance", "royal",
        "workplace-romance",
    )),
    "documentary": (0.08, 0.50, (45, 50, 55), (
        "nature", "wildlife", "ocean", "true-crime", "politics", "history", "music", "food",
        "travel", "science", "biography", "sports-doc",
    )),
    "kids": (0.07, 0.70, (20, 22, 24), (
        "preschool", "educational", "bedtime", "adventure", "animals", "dinosaurs",
        "fairy-tale", "musical", "puppets", "friendship", "school", "superheroes-kids",
    )),
    "animation": (0.06, 0.60, (22, 24, 26), (
        "anime", "mecha", "isekai", "family-animation", "cgi", "shorts", "adult-animation",
        "stop-motion", "slice-of-life", "fantasy", "musical-animation", "superhero-animation",
    )),
    "reality": (0.05, 0.85, (40, 45, 52), (
        "competition", "talent", "game-show", "dating", "docusoap", "prank", "cooking",
        "makeover", "home-renovation", "survival-show", "travel-show", "talent-search",
    )),
    "sports": (0.04, 0.50, (45, 52, 58), (
        "football", "basketball", "live-match", "tennis", "golf", "athletics", "motorsport",
        "cycling", "olympics", "boxing", "esports", "highlights",
    )),
}
# fmt: on
_DEFAULT_PROFILE = (0.06, 0.5, (30, 45, 55), ())

# fmt: off
_ADJ = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Lost", "Wild", "Frozen",
    "Burning", "Quiet", "Dark", "Bright", "Secret", "Final", "Endless", "Savage", "Gentle",
    "Hollow", "Electric", "Midnight", "Northern", "Restless", "Velvet", "Iron", "Paper",
    "Distant", "Sudden", "Little", "Lucky", "Bitter", "Painted", "Fallen", "Rising", "Stolen",
    "Perfect", "Crooked", "Blue", "Red", "Second",
)
_NOUN = (
    "Harbor", "Signal", "Garden", "Empire", "Promise", "Frontier", "Station", "Kingdom",
    "River", "Witness", "Orchard", "Circuit", "Horizon", "Island", "Letter", "Mirror", "Canyon",
    "Summer", "Winter", "Machine", "Crown", "Valley", "Storm", "Voyage", "Lantern", "Academy",
    "Ritual", "Archive", "Tide", "Game", "Road", "Heart", "City", "House", "Line", "Code",
    "Season", "Shadow", "Planet", "Street", "Bridge", "Family", "Engine", "Forest", "Ocean",
    "Dream", "Lesson", "Hour", "Party", "Chase",
)
# fmt: on
_SUFFIX = ("", "", "", "", " II", " Returns", ": Origins", " III")


RELEASE_WEEKDAYS = (2, 4, 6)  # new episodes come out on Wednesdays, Fridays and Sundays


def _release_day(rng: np.random.Generator, start: dt.date, lo: int, hi: int) -> int:
    """A day offset in [lo, hi], on a release weekday when one is in range."""
    days = [
        d for d in range(lo, hi + 1) if (start + dt.timedelta(days=d)).weekday() in RELEASE_WEEKDAYS
    ]
    if not days:
        days = list(range(lo, hi + 1))
    return int(days[rng.integers(len(days))])


def load_categories(seeds_dir: Path) -> list[str]:
    with open(seeds_dir / "categories.csv", newline="", encoding="utf-8") as f:
        cats = [row["category"].strip() for row in csv.DictReader(f) if row.get("category")]
    if not cats:
        raise ValueError(f"no categories in {seeds_dir / 'categories.csv'}")
    return cats


def load_cancel_reasons(seeds_dir: Path) -> list[str]:
    with open(seeds_dir / "cancel_reasons.csv", newline="", encoding="utf-8") as f:
        codes = [row["reason_code"].strip() for row in csv.DictReader(f) if row.get("reason_code")]
    if not codes:
        raise ValueError(f"no reason codes in {seeds_dir / 'cancel_reasons.csv'}")
    return codes


def profile(cat: str) -> tuple[float, float, tuple[int, ...], tuple[str, ...]]:
    return _PROFILES.get(cat, _DEFAULT_PROFILE)


def category_keywords(cat: str) -> list[str]:
    kw = list(profile(cat)[3])
    if len(kw) < 3 * N_CLUSTERS:
        kw = [f"{cat}-{i + 1}" for i in range(3 * N_CLUSTERS)]
    return kw


def category_weights(categories: list[str]) -> np.ndarray:
    w = np.array([profile(c)[0] for c in categories], dtype=np.float64)
    return w / w.sum()


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
    weeks_in_window = (days - 1) // 7 + 1  # weekly slots that fit in the window
    in_window_ok = days >= 8

    rows: list[dict] = []  # one per title (Python loop per title/series is fine: catalog-sized)
    s_rows: list[dict] = []
    for c, cat in enumerate(categories):
        share, ep_minutes = profile(cat)[1], profile(cat)[2]
        tc = int(alloc[c])
        n_ep = int(round(tc * share)) if tc >= 4 else 0
        n_mov = tc - n_ep
        remaining = n_ep
        while remaining > 0:
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
            if in_window_ok and u < 0.10:
                status = "premiere"  # a new series: one season, released weekly in the window
                n = min(remaining, eps_per, weeks_in_window)
            else:
                n = min(remaining, eps_per * n_seasons)
                if in_window_ok and u < 0.45 and (n - 1) % eps_per + 1 >= 2:
                    status = "running"  # the last season is still being released weekly
            if 0 < remaining - n < 4 and status != "premiere":
                n = remaining
                if status == "running" and (n - 1) % eps_per + 1 < 2:
                    status = "ended"
            remaining -= n
            sidx = len(s_rows)
            base_min = float(rng.choice(ep_minutes))
            pop = float(rng.lognormal(0.0, 1.1)) * (1.6 if status != "ended" else 1.0)
            s_cluster = int(rng.integers(N_CLUSTERS))
            ck = category_keywords(cat)
            own = ck[3 * s_cluster : 3 * s_cluster + 3]
            s_kw = [own[j] for j in sorted(rng.choice(3, 2, replace=False))]
            s_kw.append(ck[rng.integers(len(ck))])
            s_rows.append(
                dict(
                    cat=c,
                    cluster=s_cluster,
                    pop=pop,
                    keywords=list(dict.fromkeys(s_kw)),
                    quality=float(rng.normal(0, 0.35)),
                    status=status,
                    name=f"The {_ADJ[rng.integers(len(_ADJ))]} {_NOUN[rng.integers(len(_NOUN))]}",
                )
            )
            season = np.arange(n) // eps_per + 1
            episode = np.arange(n) % eps_per + 1
            # release schedule: weekly within a season, ~a year between seasons
            gap = np.zeros(n, dtype=np.int64)
            gap[1:] = np.where(season[1:] != season[:-1], rng.integers(250, 420), 7)
            rel = np.cumsum(gap)
            if status == "premiere":
                first = _release_day(rng, start, 0, days - 7 * (n - 1) - 1)
                avail = first + rel
            elif status == "running":
                last_season_n = int((season == season[-1]).sum())
                k_in = int(min(last_season_n - 1, rng.integers(1, last_season_n), weeks_in_window))
                k_in = max(k_in, 1)
                first_in = _release_day(rng, start, 0, min(6, days - 1 - 7 * (k_in - 1)))
                # episode n-k_in is released on first_in; the rest follow weekly
                avail = rel - rel[n - k_in] + first_in
            else:
                last = -int(rng.integers(14, 2500))
                avail = rel - rel[-1] + last
            dur = np.clip(base_min * 60 * rng.normal(1.0, 0.06, n), 20 * 60, 60 * 60).astype(
                np.int64
            )
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
        # movies
        if n_mov:
            mins = rng.normal(105, 17, n_mov)
            if cat in ("kids", "animation", "documentary"):
                mins = rng.normal(92, 8, n_mov)
            dur = np.clip(mins * 60, 80 * 60, 150 * 60).astype(np.int64)
            new = (rng.random(n_mov) < 0.08) & in_window_ok
            new[0] = False  # the category's always-available fallback movie
            fridays = [d for d in range(1, days) if (start + dt.timedelta(days=d)).weekday() == 4]
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

    n = len(rows)
    cat = np.array([r["cat"] for r in rows], dtype=np.int16)
    kind = np.array([r["kind"] for r in rows], dtype=np.int8)
    series = np.array([r["series"] for r in rows], dtype=np.int32)
    avail = np.array([r["avail"] for r in rows], dtype=np.int32)
    ordinal = np.array([r["ordinal"] for r in rows], dtype=np.int32)
    # title ids follow the order titles became available (ties: series, then order, then random)
    order = np.lexsort((rng.random(n), ordinal, series, avail))
    rows = [rows[i] for i in order]
    cat, kind, series, avail, ordinal = (
        cat[order],
        kind[order],
        series[order],
        avail[order],
        ordinal[order],
    )

    # series numbering by first availability
    seen: dict[int, int] = {}
    for r in rows:
        if r["series"] >= 0 and r["series"] not in seen:
            seen[r["series"]] = len(seen)
    s_old = sorted(seen, key=seen.get)
    s_rows = [s_rows[i] for i in s_old]
    series = np.array([seen[s] if s >= 0 else -1 for s in series.tolist()], dtype=np.int32)

    pop = np.empty(n)
    quality = np.empty(n, dtype=np.float32)
    cluster = np.empty(n, dtype=np.int8)
    for i, r in enumerate(rows):
        if r["kind"] == 0:
            pop[i], quality[i], cluster[i] = r["pop"], r["quality"], r["cluster"]
        else:
            s = s_rows[series[i]]
            pop[i], quality[i], cluster[i] = s["pop"], s["quality"], s["cluster"]

    # a few movies leave the catalog on a release day inside the window
    removed = np.full(n, NEVER, dtype=np.int32)
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

    # names, keywords, release years
    names: list[str] = []
    keywords: list[list[str]] = []
    release_year = np.empty(n, dtype=np.int32)
    season_arr = np.array([r["season"] for r in rows], dtype=np.int32)
    episode_arr = np.array([r["episode"] for r in rows], dtype=np.int32)
    # first-episode availability of each (series, season) for episode release years
    season_first: dict[tuple[int, int], int] = {}
    for i in range(n):
        if kind[i] == 1:
            key = (int(series[i]), int(season_arr[i]))
            season_first[key] = min(season_first.get(key, NEVER), int(avail[i]))
    for i in range(n):
        ck = category_keywords(categories[cat[i]])
        own = ck[3 * int(cluster[i]) : 3 * int(cluster[i]) + 3]
        if kind[i] == 1:
            s = s_rows[series[i]]
            names.append(f"{s['name']} S{season_arr[i]}E{episode_arr[i]:02d}")
            kw = s["keywords"]
            first = season_first[(int(series[i]), int(season_arr[i]))]
            release_year[i] = (start + dt.timedelta(days=first)).year
        else:
            names.append(
                f"{_ADJ[rng.integers(len(_ADJ))]} {_NOUN[rng.integers(len(_NOUN))]}"
                f"{_SUFFIX[rng.integers(len(_SUFFIX))]}"
            )
            kw = [own[j] for j in sorted(rng.choice(3, 2, replace=False))]
            if rng.random() < 0.6:
                kw.append(ck[rng.integers(len(ck))])
            avail_year = (start + dt.timedelta(days=int(avail[i]))).year
            release_year[i] = max(1960, avail_year - int(rng.geometric(0.25)) + 1)
        keywords.append(list(dict.fromkeys(kw)))

    # series CSR in watch order
    eps = np.flatnonzero(kind == 1)
    eps = eps[np.lexsort((ordinal[eps], series[eps]))]
    counts = np.bincount(series[eps], minlength=len(s_rows))
    s_offsets = np.zeros(len(s_rows) + 1, dtype=np.int64)
    s_offsets[1:] = np.cumsum(counts)

    duration = np.array([r["duration"] for r in rows], dtype=np.int32)
    width = max(5, len(str(n)))
    cat_obj = Catalog(
        categories=categories,
        start=start,
        days=days,
        cat=cat,
        kind=kind,
        series=series,
        season=season_arr,
        episode=episode_arr,
        ordinal=ordinal,
        duration=duration,
        release_year=release_year,
        avail_day=avail,
        removed_day=removed,
        pop=pop,
        quality=quality,
        cluster=cluster,
        names=names,
        keywords=keywords,
        s_cat=np.array([s["cat"] for s in s_rows], dtype=np.int16),
        s_cluster=np.array([s["cluster"] for s in s_rows], dtype=np.int8),
        s_pop=np.array([s["pop"] for s in s_rows]),
        s_offsets=s_offsets,
        s_titles=eps.astype(np.int64),
        s_names=[s["name"] for s in s_rows],
        id_width=width,
        series_width=max(4, len(str(len(s_rows)))),
    )
    snap = {0}
    snap.update(int(d) for d in avail if 0 < d < days)
    snap.update(int(d) for d in removed if 0 < d < days)
    cat_obj.snapshot_days = sorted(snap)
    return cat_obj


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
