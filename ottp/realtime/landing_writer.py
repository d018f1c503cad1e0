"""Accepted intake lines appended to the landing files the batch loader reads, durably.

One writer thread owns the open file. Requests hand it their lines and wait;
the thread takes every request queued meanwhile, writes their lines as one
new gzip member, fsyncs the file once and only then answers them all (group
commit: one fsync per group, not per request). A file of complete gzip
members is a valid multi-member gzip file at every moment, so an
acknowledged line is always decodable, even after a SIGKILL.

A file is written as ``collector-<host>-<pid>-<start>-<seq>.ndjson.gz.open``
(``ottp.ingest.landing.discover`` skips that suffix, so the loader never reads
it), locked with ``flock`` while open, and renamed to its final name when it
is closed: by size, by age (a timer), at a new receipt day (UTC) or at
shutdown. On start, :func:`recover_orphans` finishes the files a crashed
process left open: the complete lines are kept, the file renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from ottp.ingest import landing

logger = logging.getLogger(__name__)

OPEN_SUFFIX = ".ndjson.gz.open"
FINAL_SUFFIX = ".ndjson.gz"
# Speed over ratio: the writer thread compresses every acknowledged line.
COMPRESS_LEVEL = 1
_STOP = object()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname()) or "host"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def gzip_member(data: bytes) -> bytes:
    """One complete gzip member: a reader sees it whole or, if cut, as a truncated tail."""
    packer = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


@dataclass
class _Pending:
    """One request's accepted lines and the future answered once they are durable."""

    lines: Sequence[bytes]
    day: date
    done: Future = field(default_factory=Future)


@dataclass
class _OpenFile:
    fd: int
    path: Path
    day: date
    opened_at: float
    size: int = 0
    lines: int = 0


class LandingWriter:
    """The one writer of this process's landing files; ``append`` returns once lines are durable."""

    def __init__(
        self,
        landing_dir: Path,
        roll_bytes: int,
        roll_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        kind: str = "events",
    ) -> None:
        # kind: the landing folder written (events; triggers for the live scenarios' record)
        self.kind = kind
        self.events_dir = Path(landing_dir) / kind
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self._clock = clock
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._file: _OpenFile | None = None
        self._seq = 0
        self._prefix = (
            f"collector-{_host()}-{os.getpid()}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        )
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
        self.files_closed: list[Path] = []
        self.lines_written = 0

    # ------------------------------------------------------------ interface

    def start(self) -> list[Path]:
        """Recover the files a crashed process left open, then start the writer thread."""
        recovered = recover_orphans(self.events_dir.parent, self.kind)
        self._thread.start()
        return recovered

    def submit(self, lines: Sequence[bytes], received_at: datetime) -> Future:
        """Queue lines (each without its newline) received at ``received_at`` (UTC)."""
        pending = _Pending(lines, received_at.astimezone(UTC).date())
        if not self._thread.is_alive():
            pending.done.set_exception(RuntimeError("the landing writer is not running"))
            return pending.done
        self._queue.put(pending)
        return pending.done

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, close (rename) the open file and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def open_path(self) -> Path | None:
        return self._file.path if self._file else None

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._seconds_to_roll())
            except queue.Empty:
                self._roll_if_old()
                continue
            group, stop = [], first is _STOP
            if not stop:
                group.append(first)
            while not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    group.append(item)
            if group:
                self._commit(group)
            if stop:
                self._close_file()
                return
            self._roll_if_old()

    def _seconds_to_roll(self) -> float | None:
        if self._file is None:
            return None
        return max(0.0, self._file.opened_at + self.roll_seconds - self._clock())

    def _roll_if_old(self) -> None:
        if self._file is not None and self._seconds_to_roll() == 0.0:
            self._close_file()

    def _commit(self, group: list[_Pending]) -> None:
        """Write the group's lines (a gzip member per receipt day), fsync once, answer all."""
        try:
            start = 0
            while start < len(group):
                day = group[start].day
                end = start
                while end < len(group) and group[end].day == day:
                    end += 1
                self._write_day(day, group[start:end])
                start = end
            if self._file is not None:
                os.fdatasync(self._file.fd)
        except Exception as exc:  # every waiting request must get an answer
            logger.error("landing write failed, %d requests refused: %s", len(group), exc)
            self._abandon_after_error()
            for pending in group:
                pending.done.set_exception(exc)
            return
        for pending in group:
            pending.done.set_result(None)
        if self._file is not None and self._file.size >= self.roll_bytes:
            self._close_file()

    def _write_day(self, day: date, group: list[_Pending]) -> None:
        if self._file is not None and self._file.day != day:
            self._close_file()
        if self._file is None:
            self._open_file(day)
        lines = [line for pending in group for line in pending.lines]
        member = gzip_member(b"\n".join(lines) + b"\n")
        view = memoryview(member)
        while view:
            view = view[os.write(self._file.fd, view) :]
        self._file.size += len(member)
        self._file.lines += len(lines)
        self.lines_written += len(lines)

    def _open_file(self, day: date) -> None:
        folder = landing.partition_dir(self.events_dir.parent, self.kind, day)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        self._seq += 1
        path = folder / f"{self._prefix}-{self._seq:06d}{OPEN_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # The name must survive a crash as well as the lines written under it.
        _fsync_dir(folder)
        self._file = _OpenFile(fd, path, day, self._clock())

    def _close_file(self) -> None:
        """fsync, rename to the final name (the loader reads it from then on), fsync the folder."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            os.fsync(f.fd)
            final = f.path.with_name(f.path.name[: -len(OPEN_SUFFIX)] + FINAL_SUFFIX)
            os.rename(f.path, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            # Left under its open name: the next start recovers it.
            logger.error("could not close landing file %s: %s", f.path.name, exc)
            return
        finally:
            os.close(f.fd)
        self.files_closed.append(final)
        logger.info("closed landing file %s (%d lines)", final.name, f.lines)

    def _abandon_after_error(self) -> None:
        """After a failed write, cut the file back to its last complete member (or leave it)."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            os.ftruncate(f.fd, f.size)
            os.fsync(f.fd)
            self._file = f
        except OSError:
            # Cannot repair it here: closed under its open name, recovered at the next start.
            os.close(f.fd)


# ------------------------------------------------------------------ recovery


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_orphan(path: Path, fd: int) -> bool:
    """Nobody holds the file's lock, and its writer is not a live process starting up."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    # collector-<host>-<pid>-<start>-<seq> (no "-" in host): between creating and
    # locking its file a live writer holds no lock yet, so a live pid of this host
    # is left alone.
    parts = path.name.split("-")
    if len(parts) == 5 and parts[1] == _host() and parts[2].isdigit():
        pid = int(parts[2])
        if pid != os.getpid() and _pid_alive(pid):
            return False
    return True


def salvage(data: bytes) -> tuple[int, bytes]:
    """(bytes of complete gzip members, complete lines decodable after them).

    Every acknowledged line is in a complete member; a member cut by a crash
    still yields the lines that were whole before the cut.
    """
    good, offset, tail = 0, 0, b""
    while offset < len(data):
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(data[offset:])
        except zlib.error:
            break
        if not inflater.eof:
            tail = out[: out.rfind(b"\n") + 1]
            break
        offset = len(data) - len(inflater.unused_data)
        good = offset
    return good, tail


def recover_orphans(landing_dir: Path, kind: str = "events") -> list[Path]:
    """Finish every ``.open`` file left by a crashed writer: keep its complete lines, rename it."""
    recovered = []
    for path in sorted(Path(landing_dir, kind).glob(f"date=*/*{OPEN_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            if not _is_orphan(path, fd):
                continue
            final = _finish_orphan(path, fd)
        finally:
            os.close(fd)
        if final is not None:
            recovered.append(final)
    return recovered


def _finish_orphan(path: Path, fd: int) -> Path | None:
    with open(path, "rb") as handle:
        data = handle.read()
    good, tail = salvage(data)
    if good == 0 and not tail:
        path.unlink()
        _fsync_dir(path.parent)
        logger.warning("removed empty orphaned landing file %s", path.name)
        return None
    if good != len(data):
        os.ftruncate(fd, good)
        if tail:
            os.lseek(fd, good, os.SEEK_SET)
            os.write(fd, gzip_member(tail))
    os.fsync(fd)
    final = path.with_name(path.name[: -len(OPEN_SUFFIX)] + FINAL_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, final)
    _fsync_dir(path.parent)
    logger.warning(
        "recovered orphaned landing file %s (%d bytes of %d kept whole, %d bytes salvaged)",
        final.name,
        good,
        len(data),
        len(tail),
    )
    return final
