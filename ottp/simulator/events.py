"""Event buffers of the simulator (private): the column buffer every stage appends events
to, the registry of ``properties`` JSON fragments, and the event-type numbering.

Event types and families come from the contract (``ottp/contract/rules.py``); ``ET``
numbers the types in the contract's order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ottp.contract import rules as contract_rules

EVENT_TYPES = contract_rules.ALL_EVENT_TYPES
ET = {name: i for i, name in enumerate(EVENT_TYPES)}
PLAYER_TYPES = contract_rules.FAMILIES["player"]
RATING_MIN = int(contract_rules.BY_ID["properties.rating.minimum"].value)
RATING_MAX = int(contract_rules.BY_ID["properties.rating.maximum"].value)


def js(s: str) -> str:
    """A JSON string literal (inputs are ASCII)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


class Events:
    """Events as columns, appended part by part; the order of ``add`` calls is kept."""

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

    def count(self) -> int:
        return sum(len(p["t"]) for p in self.parts)

    def concat(self) -> dict[str, np.ndarray]:
        out = {}
        for f, d in zip(self.FIELDS, self.DTYPES, strict=True):
            out[f] = (
                np.concatenate([p[f] for p in self.parts]) if self.parts else np.zeros(0, dtype=d)
            )
        return out
