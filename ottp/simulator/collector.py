"""The collector's view of the simulated events (private): receipt times, the dirty data
injected at ``dirty_rate`` (clock skew, late sessions, malformed lines, duplicates), and the
NDJSON part files per receipt day (``events/``, or ``segment/`` in Segment/RudderStack export
format).

Every random choice is made up front, so the files do not depend on thread scheduling;
parts are written in a small thread pool.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ottp.simulator import segment_lines
from ottp.simulator.arrays import MS_PER_DAY, Progress
from ottp.simulator.behaviour import Behaviour
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import ET, PLAYER_TYPES
from ottp.simulator.lines import (
    BAD_JSON,
    BAD_OCCURRED,
    BAD_POSITION,
    BAD_TYPE,
    CLEAN,
    MALFORMED_REASONS,
    NO_DEVICE_ID,
    NO_EVENT_ID,
    REASON_OF_KIND,
    LineWriter,
)

PART_LINES = 400_000  # at most this many lines per part file


@dataclass
class OutputStats:
    events_written: int
    lines_written: int
    duplicate_lines: int
    malformed_lines: dict[str, int]
    late_events: int
    skewed_events: int
    bot_events: int
    files: list[Path]


def _pick_groups(
    rng: np.random.Generator, group_sizes: np.ndarray, eligible: np.ndarray, target: int
) -> np.ndarray:
    """Random eligible groups whose sizes add up to about ``target`` (at least one if any)."""
    cand = np.flatnonzero(eligible & (group_sizes > 0))
    if target <= 0 or len(cand) == 0:
        return np.zeros(0, dtype=np.int64)
    cand = cand[rng.permutation(len(cand))]
    cs = np.cumsum(group_sizes[cand])
    k = int(np.searchsorted(cs, target, side="left")) + 1
    return np.sort(cand[: max(1, min(k, len(cand)))])


def _split_even(total: int, k: int) -> list[int]:
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def write_events(
    behaviour: Behaviour,
    catalog: Catalog,
    out_dir: Path,
    start: dt.date,
    days: int,
    seed: int,
    dirty_rate: float,
    rng: np.random.Generator,
    progress: Progress,
    n_users: int,
    workers: int = 2,
    progress_from: float = 40.0,
    progress_span: float = 60.0,
    fmt: str = "native",
) -> OutputStats:
    """Receipt times, dirty data, then one folder per receipt day of gzip NDJSON parts.

    ``fmt="segment"``: the same lines as Segment/RudderStack tracking calls, in
    ``segment/date=.../part-NNNNN.json.gz`` (``ottp.simulator.segment_lines``).
    """
    e = behaviour.events
    n = len(e["t"])
    end_ms = days * MS_PER_DAY
    rec = e["t"] + 150 + np.minimum(rng.exponential(2500.0, n), 60_000).astype(np.int64)
    share = dirty_rate / 5.0  # duplicates, late, skew, malformed and bots share the rate
    target = max(int(round(share * n)), 1 if share > 0 else 0)
    is_bot = behaviour.devices.bot[e["dev"]]
    occ, skew_mask = _clock_skew(rng, behaviour, share, target)
    rec, late_mask = _late_sessions(rng, behaviour, rec, share, target, days)

    keep = rec < end_ms
    order = np.flatnonzero(keep)
    order = order[np.lexsort((order, rec[order]))]
    cols = {k: v[order] for k, v in e.items()}
    occ, rec = occ[order], rec[order]
    skew_mask, late_mask, is_bot = skew_mask[order], late_mask[order], is_bot[order]
    is_player = np.isin(cols["etype"], [ET[x] for x in PLAYER_TYPES])
    aux = rng.random(len(order))  # per-line randomness for corruptions, drawn here for determinism
    kind = _malformed_kinds(rng, is_player, share, target)
    clean = kind == CLEAN
    rows_ev, rows_day, rows_kind, n_dup = _output_rows(rng, kind, rec, share, target, days)

    writer = LineWriter(
        behaviour, catalog, start, seed, cols, occ, rec, is_player, aux, n_users, fmt
    )
    segment = fmt == "segment"
    jobs = _part_jobs(
        out_dir / ("segment" if segment else "events"),
        start,
        days,
        rows_day,
        ".json.gz" if segment else ".ndjson.gz",
    )
    files = _write_parts(
        writer, jobs, rows_ev, rows_kind, progress, workers, progress_from, progress_span
    )
    malformed = {r: 0 for r in MALFORMED_REASONS}
    if segment:  # an unknown call type is unmapped_event there
        malformed = {segment_lines.REASONS[r]: 0 for r in MALFORMED_REASONS}
    for k, r in REASON_OF_KIND.items():
        reason = segment_lines.REASONS[r] if segment else r
        malformed[reason] += int((kind == k).sum())
    return OutputStats(
        events_written=int(clean.sum()),
        lines_written=int(len(rows_ev)),
        duplicate_lines=int(n_dup),
        malformed_lines=malformed,
        late_events=int((late_mask & clean).sum()),
        skewed_events=int((skew_mask & clean).sum()),
        bot_events=int((is_bot & clean).sum()),
        files=files,
    )


def _clock_skew(
    rng: np.random.Generator, behaviour: Behaviour, share: float, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Occurrence times as the devices report them: whole devices whose clock is minutes to
    two hours off. Returns (occurred ms, skewed flags)."""
    e = behaviour.events
    dev, occ = e["dev"], e["t"].copy()
    skew_mask = np.zeros(len(occ), dtype=bool)
    if share > 0:
        n_dev = len(behaviour.devices.user)
        sizes = np.bincount(dev, minlength=n_dev)
        picked = _pick_groups(rng, sizes, ~behaviour.devices.bot, target)
        skew = np.zeros(n_dev, dtype=np.int64)
        sign = np.where(rng.random(len(picked)) < 0.5, -1, 1)
        skew[picked] = sign * rng.integers(2 * 60_000, 120 * 60_000, len(picked))
        skew_mask = skew[dev] != 0
        occ = occ + skew[dev]
    return occ, skew_mask


def _late_sessions(
    rng: np.random.Generator,
    behaviour: Behaviour,
    rec: np.ndarray,
    share: float,
    target: int,
    days: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole sessions uploaded one to several days later (offline viewing, retries).
    Returns (received ms, late flags)."""
    end_ms = days * MS_PER_DAY
    late_mask = np.zeros(len(rec), dtype=bool)
    sess = behaviour.events["sess"]
    if share > 0 and days >= 2:
        n_s = len(behaviour.session_end)
        s_idx = np.where(sess >= 0, sess, n_s)
        sizes = np.bincount(s_idx, minlength=n_s + 1)[:n_s]
        room_days = (end_ms - 5 * 60_000 - behaviour.session_end) / MS_PER_DAY
        picked = _pick_groups(rng, sizes, room_days > 1.05, target)
        lateness = np.zeros(n_s + 1, dtype=np.int64)
        hi = np.minimum(room_days[picked], 4.0)
        lateness[picked] = ((1.0 + rng.random(len(picked)) * (hi - 1.0)) * MS_PER_DAY).astype(
            np.int64
        )
        late_mask = lateness[s_idx] > 0
        rec = rec + lateness[s_idx]
    return rec, late_mask


def _malformed_kinds(
    rng: np.random.Generator, is_player: np.ndarray, share: float, target: int
) -> np.ndarray:
    """The kind of each line (CLEAN or a defect): malformed lines replace events."""
    n = len(is_player)
    kind = np.zeros(n, dtype=np.int8)
    if share > 0 and n > 10:
        m = _split_even(max(target, 4), 4)
        perm = rng.permutation(n)
        pos = 0
        take = {}
        for k, cnt in (
            (BAD_JSON, m[0]),
            (BAD_OCCURRED, m[1] - m[1] // 2),
            (NO_EVENT_ID, m[2] - m[2] // 2),
            (NO_DEVICE_ID, m[2] // 2),
            (BAD_TYPE, m[3]),
        ):
            take[k] = perm[pos : pos + cnt]
            pos += cnt
        for k, rows in take.items():
            kind[rows] = k
        players = np.flatnonzero(is_player & (kind == CLEAN))
        want = m[1] // 2 if len(players) else 0
        if want:
            kind[players[rng.permutation(len(players))[:want]]] = BAD_POSITION
        if not want:  # no player events: all wrong types on occurred_at
            extra = np.flatnonzero(kind == CLEAN)[: m[1] // 2]
            kind[extra] = BAD_OCCURRED
    return kind


def _output_rows(
    rng: np.random.Generator,
    kind: np.ndarray,
    rec: np.ndarray,
    share: float,
    target: int,
    days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Lines in file order: every event, plus exact copies of some clean lines (collector
    retries, some on the next day). Returns (event row, receipt day, kind, copies)."""
    n = len(kind)
    day = rec // MS_PER_DAY
    rows_ev = np.arange(n, dtype=np.int64)
    rows_day = day
    rows_sort = rec
    rows_kind = kind
    n_dup = 0
    if share > 0:
        cand = np.flatnonzero(kind == CLEAN)
        n_dup = min(max(target, 1), len(cand))
        dup = np.sort(cand[rng.permutation(len(cand))[:n_dup]])
        nextday = (rng.random(n_dup) < 0.4) & (day[dup] < days - 1)
        d_day = day[dup] + nextday
        d_sort = np.where(
            nextday,
            (day[dup] + 1) * MS_PER_DAY + rng.integers(0, 6 * 3_600_000, n_dup),
            np.minimum(
                rec[dup] + rng.integers(1000, 15 * 60_000, n_dup), (day[dup] + 1) * MS_PER_DAY - 1
            ),
        )
        rows_ev = np.concatenate([rows_ev, dup])
        rows_day = np.concatenate([rows_day, d_day])
        rows_sort = np.concatenate([rows_sort, d_sort])
        rows_kind = np.concatenate([rows_kind, np.zeros(n_dup, dtype=np.int8)])
    o = np.lexsort((np.arange(len(rows_ev)), rows_sort, rows_day))
    return rows_ev[o], rows_day[o], rows_kind[o], n_dup


def _part_jobs(
    base: Path, start: dt.date, days: int, rows_day: np.ndarray, suffix: str = ".ndjson.gz"
) -> list[tuple[Path, int, int]]:
    """(part file, first row, end row) per part: at most PART_LINES lines each."""
    jobs = []
    bounds = np.searchsorted(rows_day, np.arange(days + 1))
    for d in range(days):
        lo, hi = int(bounds[d]), int(bounds[d + 1])
        if hi <= lo:
            continue
        n_parts = -(-(hi - lo) // PART_LINES)
        cuts = np.linspace(lo, hi, n_parts + 1).astype(np.int64)
        folder = base / f"date={(start + dt.timedelta(days=d)).isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        for p in range(n_parts):
            jobs.append((folder / f"part-{p:05d}{suffix}", int(cuts[p]), int(cuts[p + 1])))
    return jobs


def _write_parts(
    writer: LineWriter,
    jobs: list[tuple[Path, int, int]],
    rows_ev: np.ndarray,
    rows_kind: np.ndarray,
    progress: Progress,
    workers: int,
    progress_from: float,
    progress_span: float,
) -> list[Path]:
    """Write the parts in a small thread pool, a bounded number queued at a time."""
    files = []
    total = max(1, len(jobs))
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        for path, lo, hi in jobs:
            pending.append(pool.submit(writer.write, path, rows_ev[lo:hi], rows_kind[lo:hi]))
            files.append(path)
            while len(pending) > 2 * workers:  # bound the memory held by queued parts
                pending.pop(0).result()
                done += 1
                progress.set(progress_from + progress_span * done / total, f"events {done}/{total}")
        for f in pending:
            f.result()
            done += 1
            progress.set(progress_from + progress_span * done / total, f"events {done}/{total}")
    return files
