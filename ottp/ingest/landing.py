"""Where landing files live and how they are named.

Layout (what the collector and the content system deliver):
    <landing>/events/date=YYYY-MM-DD/part-*.ndjson.gz
    <landing>/catalog/date=YYYY-MM-DD/*.ndjson.gz
    <landing>/segment/date=YYYY-MM-DD/*.gz | *.json | *.jsonl | *.ndjson

Files under ``segment/`` are events in Segment/RudderStack export format (one
tracking call per line, ``ottp.ingest.segment_files``): the folder alone says
so, whatever the lines hold.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

FILE_KINDS = ("events", "catalog")
# Line formats of event files: contract events, or Segment/RudderStack tracking calls.
NATIVE, SEGMENT = "native", "segment"
SEGMENT_FOLDER = "segment"
_SEGMENT_SUFFIXES = (".gz", ".json", ".jsonl", ".ndjson")
_PARTITION_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    kind: str
    partition_date: date
    format: str = NATIVE

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def partition_dir(landing_dir: Path, kind: str, day: date) -> Path:
    return Path(landing_dir) / kind / f"date={day.isoformat()}"


def discover(landing_dir: Path, day: date | None = None) -> list[LandingFile]:
    """Every landing file, catalog first (events reference titles), in date and name order.

    Event files in Segment/RudderStack format (``segment/``) come after the
    native ones of the same kind.
    """
    found: list[LandingFile] = []
    for kind in FILE_KINDS:
        found += _scan(Path(landing_dir) / kind, kind, NATIVE, day)
        if kind == "events":
            found += _scan(Path(landing_dir) / SEGMENT_FOLDER, kind, SEGMENT, day)
    return found


def _scan(root: Path, kind: str, fmt: str, day: date | None) -> list[LandingFile]:
    """The files of ``root/date=YYYY-MM-DD/`` folders (of ``day`` if given) with a known suffix."""
    suffixes = _SEGMENT_SUFFIXES if fmt == SEGMENT else (".ndjson.gz", ".ndjson", ".json.gz")
    found: list[LandingFile] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        match = _PARTITION_DIR.match(folder.name)
        if not folder.is_dir() or not match:
            continue
        folder_day = date.fromisoformat(match.group(1))
        if day is not None and folder_day != day:
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name.endswith(suffixes):
                found.append(LandingFile(path.resolve(), kind, folder_day, fmt))
    return found


def partition_dates(landing_dir: Path) -> list[date]:
    """The landing days present, oldest first."""
    return sorted({f.partition_date for f in discover(landing_dir)})


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
