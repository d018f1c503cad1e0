"""How one event becomes one NDJSON line (private): event, playback, user and device ids,
the per-device and per-playback context fragments, and the single defect of each
malformed line (the loader must reject it for exactly one reason).

Lines are assembled column-wise with Arrow string kernels and compressed with zlib
(gzip wrapper, mtime 0). In Segment/RudderStack export format (``fmt="segment"``)
the clean lines are rewritten as tracking calls by ``segment_lines``.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ottp.contract import segment
from ottp.simulator import segment_lines
from ottp.simulator.arrays import fixed_width_strings, id_strings, iso_ms_strings, uuid_strings
from ottp.simulator.behaviour import Behaviour
from ottp.simulator.catalog import Catalog
from ottp.simulator.events import ET, EVENT_TYPES
from ottp.simulator.viewers import COUNTRIES, PLATFORMS

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
# Line formats: contract events, or Segment/RudderStack tracking calls.
FORMATS = ("native", "segment")
# The defect of a malformed line, in segment_lines.corrupt's words.
_SEGMENT_DEFECT = {
    BAD_JSON: "invalid_json",
    BAD_OCCURRED: "wrong_occurred",
    BAD_POSITION: "wrong_position",
    NO_EVENT_ID: "no_event_id",
    NO_DEVICE_ID: "no_device_id",
    BAD_TYPE: "unknown_type",
}
UNKNOWN_TYPES = ("telemetry_blob", "ad_beacon", "debug_log")


def id_keys(seed: int) -> list[int]:
    """Keys of the event and playback UUIDs: (event hi, event lo, playback hi, playback lo)."""
    keys = np.random.SeedSequence([seed, 0x0E7]).generate_state(4, dtype=np.uint64)
    return [int(k) for k in keys]


def id_widths(behaviour: Behaviour, n_users: int) -> tuple[int, int]:
    """Digits of user ids (``u_000001``) and device ids (``d_0000001``) in this run."""
    user = behaviour.devices.user
    nd = len(user)
    total_users = max(n_users, int(user.max()) + 1 if nd else 0)
    return max(6, len(str(total_users))), max(7, len(str(nd)))


class LineWriter:
    """Builds NDJSON lines for a slice of output rows and writes one gzip part."""

    def __init__(
        self,
        behaviour: Behaviour,
        catalog: Catalog,
        start: dt.date,
        seed: int,
        cols: dict,
        occ: np.ndarray,
        rec: np.ndarray,
        is_player: np.ndarray,
        aux: np.ndarray,
        n_users: int,
        fmt: str = "native",
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
        self.fmt = fmt
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
        dv = behaviour.devices
        nd = len(dv.user)
        uw, dw = id_widths(behaviour, n_users)
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
        self.props = behaviour.props_table
        if fmt == "segment":
            self.clock_offset = segment_lines.clock_offsets(seed, nd)
            self.segment_sql = segment_lines.conversion_sql(segment.configured_mapping())

    def lines(self, ev: np.ndarray, kind: np.ndarray) -> pa.Array:
        if self.fmt == "segment":
            return self._segment(ev, kind)
        return self._corrupted(self._clean(ev), ev, kind, _corrupt)

    def _segment(self, ev: np.ndarray, kind: np.ndarray) -> pa.Array:
        """Export lines: the clean lines rewritten, on each device's clock (segment_lines)."""
        offset = self.clock_offset[self.cols["dev"][ev]]
        line = segment_lines.convert(
            self._clean(ev),
            iso_ms_strings(self.epoch0 + self.occ[ev] + offset),
            iso_ms_strings(self.epoch0 + self.rec[ev] + offset),
            self.segment_sql,
        )
        return self._corrupted(
            line.combine_chunks(),
            ev,
            kind,
            lambda text, k, u, epoch_s: segment_lines.corrupt(text, _SEGMENT_DEFECT[k], u, epoch_s),
        )

    def _clean(self, ev: np.ndarray) -> pa.Array:
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
        return line

    def _corrupted(self, line: pa.Array, ev: np.ndarray, kind: np.ndarray, corrupt) -> pa.Array:
        """The lines with the defect of each malformed one (``corrupt``) in its place."""
        bad = np.flatnonzero(kind != CLEAN)
        if len(bad):
            repl = [
                corrupt(
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
