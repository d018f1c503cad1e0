"""POST /v1/events against a real ``ottp serve``: verdicts, caps, durability, exactly-once."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
import requests

from ottp import config
from ottp.realtime.landing_writer import salvage
from tests.conftest import make_event

CAPS = {"OTTP_MAX_BODY_BYTES": str(3 << 20), "OTTP_MAX_LINES": "1000"}


@pytest.fixture(scope="module")
def server(realtime_server_module):
    """One server for the module's tests that need no particular setting."""
    return realtime_server_module(CAPS)


def landed_lines(server) -> list[bytes]:
    """Every complete line in the server's landing files, open ones included."""
    lines = []
    for path in sorted((server.landing_dir / "events").glob("date=*/*")):
        data = path.read_bytes()
        good, tail = salvage(data)
        lines += (gzip.decompress(data[:good]) if good else b"").splitlines()
        lines += tail.splitlines()
    return lines


def landed_ids(server) -> list[str]:
    return [json.loads(line)["event_id"] for line in landed_lines(server)]


def test_health_needs_no_key_and_the_openapi_page_is_served(server):
    health = requests.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    spec = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    assert "/v1/events" in spec["paths"] and "/health" in spec["paths"]
    assert spec["paths"]["/v1/events"]["post"]["description"]
    assert requests.get(f"{server.url}/docs", timeout=5).status_code == 200


def test_intake_needs_the_key(server):
    url, body = f"{server.url}/v1/events", [make_event()]
    assert requests.post(url, json=body, timeout=5).status_code == 401
    wrong = requests.post(url, json=body, headers={"X-API-Key": "nope"}, timeout=5)
    assert wrong.status_code == 401
    bearer = requests.post(url, json=[], headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bearer.status_code == 401
    good = {"Authorization": f"Bearer {server.api_key}"}
    assert requests.post(url, json=[], headers=good, timeout=5).status_code == 200
    assert landed_ids(server).count(body[0]["event_id"]) == 0


def test_the_service_does_not_start_without_a_key(tmp_path):
    env = config.child_env({"OTTP_API_KEY": None, "OTTP_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "ottp.cli", "serve", "--port", "1"],
        env=env,
        cwd=config.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "OTTP_API_KEY" in done.stderr


def test_a_json_array_is_accepted_and_durable_before_the_answer(server):
    events = [make_event() for _ in range(100)]
    answer = server.post_events(events)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"], result["duplicates"]) == (100, 0, 0)
    assert [f["event_id"] for f in result["lines"]] == [e["event_id"] for e in events]
    # answered: every line is already decodable in the landing file (open or closed)
    landed = set(landed_ids(server))
    assert all(e["event_id"] in landed for e in events)
