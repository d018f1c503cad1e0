"""Collector view of the simulated events (private): receipt times, dirty data, NDJSON files.

Lines are assembled column-wise with Arrow string kernels and compressed with
zlib (gzip wrapper, mtime 0) in a small thread pool; every random choice is
made up front so the files do not depend on thread scheduling.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ottp.simulator.arrays import (
    MS_PER_DAY,
    Progress,
    fixed_width_strings,
    id_strings,
    iso_ms_strings,
    uuid_strings,
)
from ottp.simulator.behaviour import COUNTRIES, ET, EVENT_TYPES, PLATFORMS, PLAYER_TYPES, Model
from ottp.simulator.catalog import Catalog

PART_LINES = 400_000  # at most this many lines per part file
GZIP_LEVEL = 1

# line kinds
CLEAN, BAD_JSON, BAD_OCCURRED, BAD_POSITION, NO_EVENT_ID, NO_DEVICE_ID, BAD_TYPE = range(7)
REASON_OF_KIND = {
    BAD_JSON: "invalid_json",
    BAD_OCCURRED: "wrong_type",
    BAD_POSITION: "wrong_type",
    NO_EVENT_ID: "missing_field",
    NO_DEVICE_ID: "missing_field",
    BAD_TYPE: "unknown_event_type",
}
MALFORMED_REASONS = ("invalid_json", "wrong_type", "missing_field", "unknown_event_type")
UNKNOWN_TYPES = ("telemetry_blob", "ad_beacon", "debug_log")
TRUTH_DIR = "_truth"  # next to events/ and catalog/: what the simulator planted


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


def id_keys(seed: int) -> list[int]:
    """Keys of the event and playback UUIDs: (event hi, event lo, playback hi, playback lo)."""
    keys = np.random.SeedSequence([seed, 0x0E7]).generate_state(4, dtype=np.uint64)
    return [int(k) for k in keys]


def id_widths(model: Model, n_users: int) -> tuple[int, int]:
    """Digits of user ids (``u_000001``) and device ids (``d_0000001``) in this run."""
    user = model.devices.user
    nd = len(user)
    total_users = max(n_users, int(user.max()) + 1 if nd else 0)
    return max(6, len(str(total_users))), max(7, len(str(nd)))


def _id_array(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    if len(numbers) == 0:
        return pa.array([], type=pa.string())
    return fixed_width_strings(id_strings(prefix, numbers, width)).cast(pa.string())


def write_truth(model: Model, catalog: Catalog, out_dir: Path, seed: int, n_users: int) -> Path:
    """The planted truth as Parquet files in ``out_dir/_truth`` (the loader never reads it).

    - ``devices.parquet``: every device the simulator made: device_id, user_id (null for
      anonymous devices), is_bot, bot_kind ('non_stop_player', 'scraper' or null).
    - ``favourite_categories.parquet``: each simulated person's three preferred categories:
      user_id, category, rank (1 = favourite), preference (the share of the person's
      choices of what to watch that goes to the category, before availability).
    - ``playbacks.parquet``: every playback started in the window: playback_id, user_id,
      title_id, device_id, true_played_s (seconds of content played before the end of the
      window, as simulated: before the collector drops, corrupts or delays lines), is_bot.
    """
    import pyarrow.parquet as pq

    folder = out_dir / TRUTH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    uw, dw = id_widths(model, n_users)
    dv = model.devices
    nd = len(dv.user)

    def user_ids(u: np.ndarray) -> pa.Array:
        ids = _id_array("u_", np.maximum(u, 0) + 1, uw)
        return pc.if_else(pa.array(u < 0), pa.scalar(None, pa.string()), ids)

    kind = np.where(dv.user >= 0, "non_stop_player", "scraper")
    devices = pa.table(
        {
            "device_id": _id_array("d_", np.arange(1, nd + 1), dw),
            "user_id": user_ids(dv.user),
            "is_bot": pa.array(dv.bot, type=pa.bool_()),
            "bot_kind": pa.array(np.where(dv.bot, kind, None).tolist(), type=pa.string()),
        }
    )
    tr = model.truth
    pref = tr["pref"]
    top = min(3, pref.shape[1])
    # rank categories by preference, ties by category order (stable)
    order = np.argsort(-pref, axis=1, kind="stable")[:, :top]
    fav_user = np.repeat(np.arange(pref.shape[0]), top)
    fav_cat = order.ravel()
    favourites = pa.table(
        {
            "user_id": user_ids(fav_user),
            "category": pa.array(catalog.categories).take(pa.array(fav_cat)),
            "rank": pa.array(np.tile(np.arange(1, top + 1), pref.shape[0]), type=pa.int32()),
            "preference": pa.array(pref[fav_user, fav_cat], type=pa.float64()),
        }
    )
    keys = id_keys(seed)
    play = tr["play"]
    playbacks = pa.table(
        {
            "playback_id": uuid_strings(keys[2], keys[3], play).cast(pa.string()),
            "user_id": user_ids(tr["play_user"]),
            "title_id": _id_array("t_", tr["play_title"] + 1, catalog.id_width),
            "device_id": _id_array("d_", tr["play_dev"] + 1, dw),
            "true_played_s": pa.array(tr["play_true_s"], type=pa.float64()),
            "is_bot": pa.array(tr["play_bot"], type=pa.bool_()),
        }
    )
    for name, table in (
        ("devices", devices),
        ("favourite_categories", favourites),
        ("playbacks", playbacks),
    ):
        pq.write_table(table, folder / f"{name}.parquet", compression="zstd")
    return folder


def _split_even(total: int, k: int) -> list[int]:
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def write_events(
    model: Model,
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
) -> OutputStats:
    e = model.events
    n = len(e["t"])
    end_ms = days * MS_PER_DAY
    t = e["t"]
    rec = t + 150 + np.minimum(rng.exponential(2500.0, n), 60_000).astype(np.int64)
    occ = t.copy()
    share = dirty_rate / 5.0  # duplicates, late, skew, malformed and bots share the rate
    target = max(int(round(share * n)), 1 if share > 0 else 0)
    dev = e["dev"]
    is_bot = model.devices.bot[dev]

    # clock skew: whole devices whose clock is minutes to two hours off
    skew_mask = np.zeros(n, dtype=bool)
    if share > 0:
        n_dev = len(model.devices.user)
        sizes = np.bincount(dev, minlength=n_dev)
        picked = _pick_groups(rng, sizes, ~model.devices.bot, target)
        skew = np.zeros(n_dev, dtype=np.int64)
        sign = np.where(rng.random(len(picked)) < 0.5, -1, 1)
        skew[picked] = sign * rng.integers(2 * 60_000, 120 * 60_000, len(picked))
        skew_mask = skew[dev] != 0
        occ = occ + skew[dev]

    # late arrival: whole sessions uploaded one to several days later (offline viewing, retries)
    late_mask = np.zeros(n, dtype=bool)
    sess = e["sess"]
    if share > 0 and days >= 2:
        n_s = len(model.session_end)
        s_idx = np.where(sess >= 0, sess, n_s)
        sizes = np.bincount(s_idx, minlength=n_s + 1)[:n_s]
        room_days = (end_ms - 5 * 60_000 - model.session_end) / MS_PER_DAY
        picked = _pick_groups(rng, sizes, room_days > 1.05, target)
        lateness = np.zeros(n_s + 1, dtype=np.int64)
        hi = np.minimum(room_days[picked], 4.0)
        lateness[picked] = ((1.0 + rng.random(len(picked)) * (hi - 1.0)) * MS_PER_DAY).astype(
            np.int64
        )
        late_mask = lateness[s_idx] > 0
        rec = rec + lateness[s_idx]

    keep = rec < end_ms
    order = np.flatnonzero(keep)
    order = order[np.lexsort((order, rec[order]))]
    cols = {k: v[order] for k, v in e.items()}
    occ, rec = occ[order], rec[order]
    skew_mask, late_mask, is_bot = skew_mask[order], late_mask[order], is_bot[order]
    n = len(order)
    is_player = np.isin(cols["etype"], [ET[x] for x in PLAYER_TYPES])

    # malformed lines replace events; duplicates copy clean lines
    kind = np.zeros(n, dtype=np.int8)
    aux = rng.random(n)  # per-line randomness for corruptions, drawn here for determinism
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
    clean = kind == CLEAN
    day = rec // MS_PER_DAY
    rows_ev = np.arange(n, dtype=np.int64)
    rows_day = day
    rows_sort = rec
    rows_kind = kind
    n_dup = 0
    if share > 0:
        cand = np.flatnonzero(clean)
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
    rows_ev, rows_day, rows_kind = rows_ev[o], rows_day[o], rows_kind[o]

    # lookup tables
    writer = _LineWriter(model, catalog, start, seed, cols, occ, rec, is_player, aux, n_users)
    base = out_dir / "events"
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
            jobs.append((folder / f"part-{p:05d}.ndjson.gz", int(cuts[p]), int(cuts[p + 1])))
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
    malformed = {r: 0 for r in MALFORMED_REASONS}
    for k, r in REASON_OF_KIND.items():
        malformed[r] += int((kind == k).sum())
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


class _LineWriter:
    """Builds NDJSON lines for a slice of output rows and writes one gzip part."""

    def __init__(
        self,
        model: Model,
        catalog: Catalog,
        start: dt.date,
        seed: int,
        cols: dict,
        occ: np.ndarray,
        rec: np.ndarray,
        is_player: np.ndarray,
        aux: np.ndarray,
        n_users: int,
    ) -> None:
        self.keys = id_keys(seed)
        epoch0 = (
            int((dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)).timestamp()) * 1000
        )
        self.epoch0 = epoch0
        self.cols = cols
        self.occ = occ
        self.rec = rec
        self.is_player = is_player
        self.aux = aux
        self.etype_frag = pa.array(
            [f'","event_type":"{x}","schema_version":"1.0","occurred_at":"' for x in EVENT_TYPES]
        )
        dv = model.devices
        nd = len(dv.user)
        uw, dw = id_widths(model, n_users)
        user_str = (
            pa.array(["null"] * nd)
            if nd == 0
            else _quoted(id_strings("u_", np.maximum(dv.user, 0) + 1, uw))
        )
        user_str = pc.if_else(pa.array(dv.user < 0), pa.scalar("null"), user_str)
        dev_str = _quoted(id_strings("d_", np.arange(1, nd + 1), dw))
        plat = pa.array(list(PLATFORMS)).take(pa.array(dv.platform))
        ver = pa.array(dv.version_names).take(pa.array(dv.version))
        ctry = pa.array([c[0] for c in COUNTRIES]).take(pa.array(dv.country))
        self.dev_frag = pc.binary_join_element_wise(
            '"user_id":',
            user_str,
            ',"device_id":',
            dev_str,
            ',"platform":"',
            plat,
            '","app_version":"',
            ver,
            '","country":"',
            ctry,
            '"',
            "",
        )
        tid = _quoted(id_strings("t_", np.arange(1, catalog.n + 1), catalog.id_width))
        dur = pc.cast(pa.array(catalog.duration), pa.string())
        self.title_frag = pc.binary_join_element_wise(',"title_id":', tid, "")
        with_dur = pc.binary_join_element_wise(',"title_id":', tid, ',"duration_s":', dur, "")
        # one context fragment per device, then one per playback (device + playback + title)
        play = cols["play"]
        n_play = int(play.max()) + 1 if len(play) else 0
        play_dev = np.zeros(n_play, dtype=np.int64)
        play_title = np.zeros(n_play, dtype=np.int64)
        play_dev[play[is_player]] = cols["dev"][is_player]
        play_title[play[is_player]] = cols["title"][is_player]
        play_frag = pc.binary_join_element_wise(
            self.dev_frag.take(pa.array(play_dev)),
            ',"playback_id":"',
            uuid_strings(self.keys[2], self.keys[3], np.arange(n_play)),
            '"',
            with_dur.take(pa.array(play_title)),
            "",
        )
        self.n_dev = nd
        self.ctx_frag = pa.concat_arrays([self.dev_frag, play_frag])
        top = int(
            max(catalog.duration.max(), cols["pos"].max(initial=0), cols["fpos"].max(initial=0))
        )
        numbers = pc.cast(pa.array(np.arange(top + 1)), pa.string())
        self.pos_frag = pc.binary_join_element_wise(',"position_s":', numbers, "")
        self.fpos_frag = pc.binary_join_element_wise(',"from_position_s":', numbers, "")
        self.seek = ET["seek"]
        self.props = model.props_table

    def lines(self, ev: np.ndarray, kind: np.ndarray) -> pa.Array:
        c = self.cols
        et = c["etype"][ev]
        player = self.is_player[ev]
        eid = uuid_strings(self.keys[0], self.keys[1], ev)
        occ = iso_ms_strings(self.epoch0 + self.occ[ev])
        rec = iso_ms_strings(self.epoch0 + self.rec[ev])
        ctx = self.ctx_frag.take(
            pa.array(np.where(player, self.n_dev + c["play"][ev], c["dev"][ev]))
        )
        title = c["title"][ev]
        tf = self.title_frag.take(pa.array(title, mask=player | (title < 0)))
        posf = self.pos_frag.take(pa.array(c["pos"][ev], mask=~player))
        fpf = self.fpos_frag.take(pa.array(c["fpos"][ev], mask=et != self.seek))
        pr = c["props"][ev]
        prf = self.props.take(pa.array(pr, mask=pr < 0))
        line = pc.binary_join_element_wise(
            '{"event_id":"',
            eid,
            self.etype_frag.take(pa.array(et)),
            occ,
            '","received_at":"',
            rec,
            '",',
            ctx,
            tf,
            posf,
            fpf,
            prf,
            "}\n",
            "",
            null_handling="replace",
            null_replacement="",
        )
        bad = np.flatnonzero(kind != CLEAN)
        if len(bad):
            repl = [
                _corrupt(
                    line[int(i)].as_py(),
                    int(kind[i]),
                    float(self.aux[ev[i]]),
                    int((self.epoch0 + self.occ[ev[i]]) // 1000),
                )
                for i in bad
            ]
            mask = np.zeros(len(ev), dtype=bool)
            mask[bad] = True
            line = pc.replace_with_mask(line, pa.array(mask), pa.array(repl, type=pa.string()))
        return line

    def write(self, path: Path, ev: np.ndarray, kind: np.ndarray) -> Path:
        line = self.lines(ev, kind)
        if isinstance(line, pa.ChunkedArray):
            line = line.combine_chunks()
        offsets = np.frombuffer(
            line.buffers()[1], dtype=np.int32 if line.type == pa.string() else np.int64
        )
        data = memoryview(line.buffers()[2])[
            offsets[line.offset] : offsets[line.offset + len(line)]
        ]
        comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        with open(path, "wb") as f:
            step = 64 << 20
            for i in range(0, len(data), step):
                f.write(comp.compress(data[i : i + step]))
            f.write(comp.flush())
        return path


def _quoted(mat: np.ndarray) -> pa.Array:
    n, w = mat.shape
    out = np.empty((n, w + 2), dtype=np.uint8)
    out[:, 0] = ord('"')
    out[:, 1:-1] = mat
    out[:, -1] = ord('"')
    return fixed_width_strings(out)


_RE_OCC = re.compile(r'"occurred_at":"[^"]*"')
_RE_POS = re.compile(r'"position_s":[0-9.]+')
_RE_EID = re.compile(r'"event_id":"[^"]*",')
_RE_DEV = re.compile(r',"device_id":"[^"]*"')
_RE_TYPE = re.compile(r'"event_type":"[^"]*"')


def _corrupt(line: str, kind: int, u: float, epoch_s: int) -> str:
    """One defect per line, so a strict loader rejects it for exactly one reason."""
    body = line[:-1]  # without the newline
    if kind == BAD_JSON:
        cut = 12 + int(u * max(1, len(body) - 14))  # a strict prefix: never valid JSON
        out = body[:cut]
    elif kind == BAD_OCCURRED:
        out = _RE_OCC.sub(f'"occurred_at":{epoch_s}', body, count=1)
    elif kind == BAD_POSITION:
        out = _RE_POS.sub('"position_s":"abc"', body, count=1)
    elif kind == NO_EVENT_ID:
        out = _RE_EID.sub("", body, count=1)
    elif kind == NO_DEVICE_ID:
        out = _RE_DEV.sub("", body, count=1)
    else:
        out = _RE_TYPE.sub(
            f'"event_type":"{UNKNOWN_TYPES[int(u * len(UNKNOWN_TYPES))]}"', body, count=1
        )
    return out + "\n"
