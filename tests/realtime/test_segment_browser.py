"""RudderStack's browser SDK in a real headless Chromium, posting to ``ottp serve`` across origins.

The page (``segment_node/browser_session.html``) and the SDK's file come from the
test's own HTTP server on one port, the collector listens on another: the SDK's
calls are cross-origin and pass only through the collector's CORS
(``OTTP_CORS_ORIGINS``). The SDK is ``@rudderstack/analytics-js`` as npm ships
it (its bundled build, plugins inside); its source configuration is a small JSON
the test serves, so nothing is asked of RudderStack's servers, and the test
checks the browser fetched nothing from any other host.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.realtime.test_intake import landed_lines
from tests.realtime.test_segment_api import identity_lines

NODE = Path(__file__).with_name("segment_node")
SDK_FILE = NODE / "node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"
PAGE = NODE / "browser_session.html"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
USER, TITLE = "u_000077", "t_00042"

pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="Debian's chromium and chromium-driver are not installed (make browser)",
    ),
    pytest.mark.skipif(
        not SDK_FILE.is_file(),
        reason="@rudderstack/analytics-js is not installed (make sdks: npm ci in segment_node)",
    ),
]


class PageServer(ThreadingHTTPServer):
    """Serves the page, the SDK's file and its source configuration; records every path asked."""

    daemon_threads = True

    def __init__(self, write_key: str) -> None:
        self.write_key, self.asked = write_key, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def source_config(self) -> bytes:
        """What RudderStack's control plane would answer: an enabled source, no destination."""
        source = {"id": "ottp-browser-test", "name": "ottp browser test", "enabled": True,
                  "writeKey": self.write_key, "workspaceId": "ottp", "config": {},
                  "destinations": []}  # fmt: skip
        return json.dumps({"source": source}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        self.server.asked.append(path)
        if path == "/session.html":
            self._send(PAGE.read_bytes(), "text/html")
        elif path == "/sdk/rsa.js":
            self._send(SDK_FILE.read_bytes(), "text/javascript")
        elif path.rstrip("/") == "/sourceConfig":
            self._send(self.server.source_config(), "application/json")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: the paths are recorded in server.asked
        pass


@pytest.fixture
def page_server(realtime_server) -> Iterator[PageServer]:
    from tests.realtime.conftest import API_KEY

    server = PageServer(API_KEY)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float, what: str, on_timeout=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")


def test_a_viewing_session_from_the_browser_sdk_lands_as_contract_events(
    realtime_server, page_server, browser
):
    collector = realtime_server({"OTTP_CORS_ORIGINS": page_server.origin})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    playback = str(uuid.uuid4())
    args = {"writeKey": collector.api_key, "collector": collector.url, "start": start.isoformat(),
            "userId": USER, "titleId": TITLE, "playbackId": playback}  # fmt: skip
    browser.get(f"{page_server.origin}/session.html#{quote(json.dumps(args))}")

    def console() -> str:
        return "\n".join(str(entry) for entry in browser.get_log("browser"))

    outcome = wait_for(lambda: browser.execute_script("return window.sessionOutcome"), 30,
                       "the SDK to load and play the session", console)  # fmt: skip
    assert outcome["errors"] == []
    landed = wait_for(lambda: (lines := landed_lines(collector)) and len(lines) >= 8 and lines,
                      30, "8 events in the collector's landing files", console)  # fmt: skip
    events = sorted((json.loads(line) for line in landed), key=lambda e: e["occurred_at"])
    assert [e["event_type"] for e in events] == ["page_view", "play_start", "heartbeat",
        "heartbeat", "heartbeat", "heartbeat", "complete", "like"]  # fmt: skip
    device = outcome["anonymousId"]
    assert {(e["user_id"], e["device_id"], e["platform"]) for e in events} == {
        (USER, device, "web")
    }
    assert {e["title_id"] for e in events} == {TITLE}
    player = [e for e in events if e.get("playback_id")]
    assert [e["position_s"] for e in player] == [0, 60, 120, 180, 240, 300]
    assert {e["playback_id"] for e in player} == {playback}
    assert events[0]["properties"]["page"] == "title"
    # the SDK's messageIds are UUIDs: they are the event ids
    assert all(uuid.UUID(e["event_id"]) for e in events)
    play_start = datetime.fromisoformat(events[1]["occurred_at"])
    assert abs(play_start - (start + timedelta(seconds=10))) < timedelta(seconds=5)
    # nothing from RudderStack's CDN or control plane: every resource came from the two servers
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    hosts = {urlsplit(url).netloc for url in fetched}
    assert hosts <= {urlsplit(page_server.origin).netloc, urlsplit(collector.url).netloc}, fetched
    # the identify is stored as an identity: this browser's anonymous id is the user's device
    identified = wait_for(lambda: identity_lines(collector), 10, "the identity")
    assert [(i["user_id"], i["device_id"]) for i in identified] == [(USER, device)]
    assert "/sourceConfig/" in page_server.asked
    assert not any(p.startswith(("/no-plugins", "/no-integrations")) for p in page_server.asked)
