"""Event simulator: synthetic raw events and title catalog snapshots in the landing layout.

    out_dir/events/date=YYYY-MM-DD/part-NNNNN.ndjson.gz   (date = collector receipt day, UTC)
    out_dir/segment/date=YYYY-MM-DD/part-NNNNN.json.gz    (instead, with fmt="segment")
    out_dir/catalog/date=YYYY-MM-DD/titles.ndjson.gz      (full catalog snapshots)
    out_dir/_truth/*.parquet                               (what was planted: see truth_dir)

Events follow ``ottp/contract/events.schema.json``, catalog records
``ottp/contract/titles.schema.json``; docs/event-contract.md describes both and
the dirty data injected at ``dirty_rate``. With ``fmt="segment"`` the same events
are written as Segment/RudderStack tracking calls (docs/segment.md): loaded, they
give the events of the native files of the same arguments.

The same arguments always produce byte-identical files. Generation is
vectorised (numpy/Arrow): users -> sessions -> playbacks -> events, with no
Python loop per user or per event. ``behaviour.py`` runs the stages (one module
each), ``collector.py`` writes the event files, ``catalog.py`` the catalog
snapshots and ``truth.py`` what was planted.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ottp import config
from ottp.contract import rules as contract_rules
from ottp.simulator.arrays import Progress
from ottp.simulator.behaviour import simulate_behaviour
from ottp.simulator.catalog import (
    build_catalog,
    load_cancel_reasons,
    write_catalog,
)
from ottp.simulator.collector import write_events
from ottp.simulator.events import EVENT_TYPES
from ottp.simulator.lines import FORMATS, MALFORMED_REASONS
from ottp.simulator.playback import HEARTBEAT_INTERVAL_S
from ottp.simulator.truth import TRUTH_DIR, write_truth

__all__ = [
    "EVENT_TYPES",
    "HEARTBEAT_INTERVAL_S",
    "MALFORMED_REASONS",
    "SimulationSummary",
    "estimate_events",
    "simulate",
    "suggest_size",
    "truth_dir",
]

DEFAULT_START_DATE = dt.date(2026, 8, 1)
# Measured average of clean events per user and day of the window (seed-to-seed spread ~10%).
EVENTS_PER_USER_DAY = 12.0
TITLES_PER_USER = 1 / 3


@dataclass(frozen=True)
class SimulationSummary:
    """What one :func:`simulate` run wrote.

    ``lines_written == events_written + duplicate_lines + sum(malformed_lines.values())``.
    Late, skewed and bot events are valid events and are included in ``events_written``.
    """

    out_dir: Path
    seed: int
    start_date: dt.date
    days: int
    users: int  # simulated people (bot accounts not included)
    titles: int  # catalog size at the end of the window
    dirty_rate: float
    events_written: int  # clean, distinct events
    lines_written: int  # every line of every event file
    duplicate_lines: int  # exact copies of clean lines (collector retries)
    malformed_lines: dict[str, int]  # keyed by the loader's rejection reason
    late_events: int  # received one to several days after they occurred
    skewed_events: int  # from devices whose clock is off
    bot_devices: int
    bot_events: int
    anonymous_devices: int
    sessions: int
    playbacks: int
    catalog_snapshots: int
    files: list[Path]  # every file written: event parts, then catalog snapshots
    event_files: list[Path]
    catalog_files: list[Path]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events_written / self.seconds if self.seconds else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["start_date"] = self.start_date.isoformat()
        for k in ("files", "event_files", "catalog_files"):
            d[k] = [str(p) for p in d[k]]
        d["malformed_lines"] = dict(self.malformed_lines)
        return d


def estimate_events(users: int, days: int) -> int:
    """Rough number of clean events a run of this size writes."""
    return int(users * days * EVENTS_PER_USER_DAY)


def suggest_size(target_events: int, days: int = 90) -> dict[str, int]:
    """Users and titles for about ``target_events`` events over ``days`` days."""
    users = max(50, math.ceil(target_events / (days * EVENTS_PER_USER_DAY)))
    titles = max(100, int(users * TITLES_PER_USER))
    return {"users": users, "titles": titles, "days": days}


def truth_dir(out_dir: Path) -> Path:
    """Where :func:`simulate` writes what it planted, next to the landing files.

    The loader never reads it (``landing.discover`` reads events/ and catalog/ only):

    - ``devices.parquet``: device_id, user_id (null for anonymous devices), is_bot,
      bot_kind ('non_stop_player' | 'scraper' | null).
    - ``favourite_categories.parquet``: user_id, category, rank (1 = favourite),
      preference: each simulated person's three preferred categories.
    - ``playbacks.parquet``: playback_id, user_id, title_id, device_id, true_played_s
      (seconds of content played before the end of the window, as simulated, before any
      dirty data), is_bot.
    """
    return Path(out_dir) / TRUTH_DIR


def _clear_previous(out_dir: Path) -> None:
    """Remove files of an earlier run (only names of this layout) so partitions are not mixed."""
    for pattern in (
        "events/date=*/part-*.ndjson.gz",
        "segment/date=*/part-*.json.gz",
        "catalog/date=*/titles.ndjson.gz",
        f"{TRUTH_DIR}/*.parquet",
    ):
        for p in out_dir.glob(pattern):
            p.unlink()
    for sub in ("events", "segment", "catalog"):
        for d in sorted((out_dir / sub).glob("date=*")):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def simulate(
    out_dir: Path,
    *,
    users: int,
    titles: int,
    days: int,
    seed: int,
    dirty_rate: float = 0.0,
    start_date: dt.date = DEFAULT_START_DATE,
    progress: bool = False,
    fmt: str = "native",
) -> SimulationSummary:
    """Write ``days`` days of events for ``users`` users and a ``titles``-title catalog.

    ``dirty_rate`` is the fraction of lines that are dirty, split about evenly between
    exact duplicates, late arrivals, client clock skew, malformed lines and bot devices.
    ``fmt`` is ``native`` (contract events) or ``segment`` (the same events as
    Segment/RudderStack tracking calls, under ``segment/``).
    """
    t_start = time.perf_counter()
    if users < 1 or days < 1:
        raise ValueError("users and days must be at least 1")
    if not 0.0 <= dirty_rate < 1.0:
        raise ValueError("dirty_rate must be in [0, 1)")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    # seeds are read at call time: tests may point config.SEEDS_DIR elsewhere
    categories = list(contract_rules.title_categories())
    reasons = load_cancel_reasons(config.SEEDS_DIR)
    if titles < len(categories):
        raise ValueError(f"titles must be at least {len(categories)} (one per category)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    bar = Progress(progress)
    bar.set(0, "catalog")

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(10)]
    catalog = build_catalog(streams[0], categories, titles, start_date, days)
    with ThreadPoolExecutor(max_workers=1) as pool:
        cat_job = pool.submit(write_catalog, catalog, out_dir)
        bar.set(3, "users, sessions, playbacks")
        behaviour = simulate_behaviour(
            streams[1:9], catalog, users, days, start_date, reasons, bot_fraction=dirty_rate / 5.0
        )
        bar.set(25, "collector: receipt, dirty data")
        stats = write_events(
            behaviour,
            catalog,
            out_dir,
            start_date,
            days,
            seed,
            dirty_rate,
            streams[9],
            bar,
            n_users=users,
            progress_from=30,
            progress_span=68,
            fmt=fmt,
        )
        bar.set(98, "truth")
        write_truth(behaviour, catalog, out_dir, seed, users)
        bar.set(99, "catalog snapshots")
        catalog_files = cat_job.result()
    bar.close()
    event_files = sorted(stats.files)
    return SimulationSummary(
        out_dir=out_dir,
        seed=seed,
        start_date=start_date,
        days=days,
        users=users,
        titles=catalog.n,
        dirty_rate=dirty_rate,
        events_written=stats.events_written,
        lines_written=stats.lines_written,
        duplicate_lines=stats.duplicate_lines,
        malformed_lines=stats.malformed_lines,
        late_events=stats.late_events,
        skewed_events=stats.skewed_events,
        bot_devices=behaviour.bot_devices,
        bot_events=stats.bot_events,
        anonymous_devices=int(((behaviour.devices.user < 0) & ~behaviour.devices.bot).sum()),
        sessions=behaviour.n_sessions,
        playbacks=behaviour.n_plays,
        catalog_snapshots=len(catalog_files),
        files=event_files + list(catalog_files),
        event_files=event_files,
        catalog_files=list(catalog_files),
        seconds=round(time.perf_counter() - t_start, 3),
    )
