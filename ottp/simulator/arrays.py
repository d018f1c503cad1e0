"""Vectorised helpers shared by the simulator modules (private).

Grouped operations work on arrays whose rows are already sorted so that each
group is one contiguous run; a group is described by ``first``, the index of
the first row of the row's group.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa

MS_PER_S = 1000
MS_PER_DAY = 86_400_000
NEVER = 1_000_000  # a day offset that is never reached


# --------------------------------------------------------------------------- groups


def group_first(flags: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's group, given "new group starts here" flags."""
    n = len(flags)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.where(flags, np.arange(n, dtype=np.int64), 0)
    idx[0] = 0
    return np.maximum.accumulate(idx)


def first_from_keys(*keys: np.ndarray) -> np.ndarray:
    """``group_first`` for rows sorted by the given key columns."""
    n = len(keys[0])
    flags = np.zeros(n, dtype=bool)
    if n:
        flags[0] = True
        for k in keys:
            flags[1:] |= k[1:] != k[:-1]
    return group_first(flags)


def cumcount(first: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each group."""
    return np.arange(len(first), dtype=np.int64) - first


def seg_cumsum(values: np.ndarray, first: np.ndarray, exclusive: bool = False) -> np.ndarray:
    """Cumulative sum within groups (inclusive by default)."""
    if len(values) == 0:
        return values.copy()
    cs = np.cumsum(values)
    base = cs[first] - values[first]
    out = cs - base
    if exclusive:
        out = out - values
    return out


def seg_cummax(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative maximum of integer values within groups."""
    if len(values) == 0:
        return values.copy()
    v = values.astype(np.int64)
    lo = int(v.min())
    v0 = v - lo
    span = int(v0.max()) + 1
    gid = np.cumsum(first == np.arange(len(first))) - 1
    if int(gid[-1]) * span >= 2**62:  # pragma: no cover - far beyond supported sizes
        raise OverflowError("seg_cummax: value range too large")
    y = v0 + gid * span
    return np.maximum.accumulate(y) - gid * span + lo


def seg_cummin(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    return -seg_cummax(-values.astype(np.int64), first)


def choice_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: ``cum`` is (n, k) row-wise cumulative weights ending at 1."""
    c = cum[rows]
    k = (c < u[:, None]).sum(axis=1)
    return np.minimum(k, cum.shape[1] - 1)


def weighted_choice(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    return np.minimum(np.searchsorted(cum, rng.random(size), side="right"), len(w) - 1)


def uniform_int(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` integers drawn uniformly from [lo, hi], both ends included."""
    return rng.integers(int(lo), int(hi) + 1, n).astype(np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- ids & strings


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash64(key: int, idx: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix of ``idx`` salted with ``key`` (deterministic, no state)."""
    salt = np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    return _splitmix64(idx.astype(np.uint64) ^ salt)


_HEX4 = np.array([f"{i:04x}".encode() for i in range(65536)], dtype="S4").view(np.uint32)
_UUID_DT = np.dtype(
    {
        "names": ["a", "d1", "b", "d2", "c", "d3", "e", "d4", "f"],
        "formats": [("<u4", 2), "S1", "<u4", "S1", "<u4", "S1", "<u4", "S1", ("<u4", 3)],
        "offsets": [0, 8, 9, 13, 14, 18, 19, 23, 24],
        "itemsize": 36,
    }
)


def fixed_width_strings(mat: np.ndarray) -> pa.StringArray:
    """(n, w) uint8 matrix of ASCII bytes -> Arrow string array without copying per row."""
    n, w = mat.shape
    offsets = np.arange(0, w * (n + 1), w, dtype=np.int64)
    if w * n < 2**31:
        return pa.StringArray.from_buffers(
            n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(mat))
        )
    return pa.LargeStringArray.from_buffers(  # pragma: no cover - huge single arrays
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(mat))
    )


def uuid_strings(key_hi: int, key_lo: int, idx: np.ndarray) -> pa.StringArray:
    """Version-4 shaped UUID strings, a pure function of (keys, idx)."""
    n = len(idx)
    hi = hash64(key_hi, idx)
    lo = hash64(key_lo, idx)
    hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x0000000000004000)
    lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    # 8 big-endian 16-bit words -> 4 hex chars each
    words = np.empty((n, 8), dtype=np.uint16)
    for j in range(4):
        words[:, j] = ((hi >> np.uint64(48 - 16 * j)) & np.uint64(0xFFFF)).astype(np.uint16)
        words[:, 4 + j] = ((lo >> np.uint64(48 - 16 * j)) & np.uint64(0xFFFF)).astype(np.uint16)
    h = _HEX4[words]
    s = np.empty(n, dtype=_UUID_DT)
    s["a"] = h[:, 0:2]
    s["b"] = h[:, 2]
    s["c"] = h[:, 3]
    s["e"] = h[:, 4]
    s["f"] = h[:, 5:8]
    for d in ("d1", "d2", "d3", "d4"):
        s[d] = b"-"
    return fixed_width_strings(s.view(np.uint8).reshape(n, 36))


def digits_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints as an (n, width) uint8 matrix."""
    v = values.astype(np.int64)
    out = np.empty((len(v), width), dtype=np.uint8)
    for j in range(width - 1, -1, -1):
        out[:, j] = (v % 10 + 48).astype(np.uint8)
        v = v // 10
    return out


def id_strings(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """e.g. prefix "u_", width 6: 1 -> b"u_000001" as an (n, len) uint8 matrix."""
    pre = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat = np.empty((len(numbers), len(pre) + width), dtype=np.uint8)
    mat[:, : len(pre)] = pre
    mat[:, len(pre) :] = digits_matrix(numbers, width)
    return mat


def id_list(prefix: str, numbers: np.ndarray, width: int) -> list[str]:
    mat = id_strings(prefix, numbers, width)
    return fixed_width_strings(mat).to_pylist() if len(mat) else []


_HMS = np.array(
    [f"{h:02d}:{m:02d}:{s:02d}".encode() for h in range(24) for m in range(60) for s in range(60)],
    dtype="S8",
).view(np.uint64)
_MSS = np.array([f".{i:03d}".encode() for i in range(1000)], dtype="S4").view(np.uint32)
_TS_DT = np.dtype(
    {
        "names": ["d", "t", "m", "z"],
        "formats": ["S11", "<u8", "<u4", "S1"],
        "offsets": [0, 11, 19, 23],
        "itemsize": 24,
    }
)
_EPOCH_DAY = np.datetime64("1970-01-01", "D")


def iso_ms_strings(epoch_ms: np.ndarray) -> pa.StringArray:
    """UTC ISO-8601 with milliseconds and a trailing Z, e.g. 2026-08-01T20:13:45.123Z."""
    ms = epoch_ms.astype(np.int64)
    n = len(ms)
    if n == 0:
        return pa.array([], type=pa.string())
    day = ms // MS_PER_DAY
    rem = ms - day * MS_PER_DAY
    d0, d1 = int(day.min()), int(day.max())
    dates = np.arange(d0, d1 + 1) + _EPOCH_DAY
    dl = np.array([(str(d) + "T").encode() for d in dates], dtype="S11")
    out = np.empty(n, dtype=_TS_DT)
    out["d"] = dl[day - d0]
    out["t"] = _HMS[rem // 1000]
    out["m"] = _MSS[rem % 1000]
    out["z"] = b"Z"
    return fixed_width_strings(out.view(np.uint8).reshape(n, 24))


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress display on stderr (no dependency)."""

    def __init__(self, enabled: bool, total: int = 100, stream=None) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.label = ""

    def set(self, done: float, label: str | None = None) -> None:
        self.done = 0
        self.update(label, advance=done)

    def update(self, label: str | None = None, advance: float = 0) -> None:
        if label is not None:
            self.label = label
        self.done = min(self.total, self.done + advance)
        if not self.enabled:
            return
        width = 30
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        el = time.perf_counter() - self.t0
        self.stream.write(f"\rsimulate [{bar}] {frac * 100:5.1f}% {el:6.1f}s {self.label[:32]:<32}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.done = self.total
            self.update()
            self.stream.write("\n")
            self.stream.flush()
