from __future__ import annotations

import gzip
import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from ottp.ingest import landing

DAY = date(2026, 8, 1)


def make_event(**overrides) -> dict:
    """A valid page_view; override fields to make any other event."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "schema_version": "1.0",
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "received_at": "2026-08-01T10:00:01.000Z",
        "user_id": "u_000001",
        "device_id": "d_0000001",
        "platform": "web",
        "app_version": "5.2.0",
        "country": "FR",
        "properties": {"page": "home"},
    }
    event.update(overrides)
    return event


def make_title(**overrides) -> dict:
    title = {
        "title_id": "t_00001",
        "name": "A film",
        "category": "drama",
        "keywords": ["family", "city"],
        "kind": "movie",
        "series_id": None,
        "season": None,
        "episode": None,
        "duration_s": 5400,
        "release_year": 2021,
        "available_from": "2026-01-01",
        "is_available": True,
    }
    title.update(overrides)
    return title


def write_landing(
    landing_dir: Path,
    lines: list[str | bytes | dict],
    day: date = DAY,
    kind: str = "events",
    name: str = "part-00000.ndjson.gz",
) -> Path:
    """Write one gzip NDJSON landing file; dicts are JSON-encoded, str/bytes written as is."""
    folder = landing.partition_dir(landing_dir, kind, day)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        chunks.append(line if isinstance(line, bytes) else line.encode())
    path = folder / name
    path.write_bytes(gzip.compress(b"\n".join(chunks) + b"\n", mtime=0))
    return path


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty OTTP_DATA_DIR for one test."""
    monkeypatch.setenv("OTTP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OTTP_LANDING_DIR", raising=False)
    return tmp_path
