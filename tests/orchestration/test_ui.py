"""The Dagster UI as a data engineer uses it, in a real headless Chromium.

Starts `dagster dev` on a small generated data set, checks the asset graph shows
every group, waits for the sensor and declarative automation to carry the landing
files to the CRM target, launches a materialization from the UI, waits for the run
to succeed and saves screenshots under test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ottp import config

ARTIFACTS = config.REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        pytest.fail("chromium and chromedriver are required in CI (make browser)", pytrace=False)
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (make browser)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the server is still starting
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    from ottp.simulator import simulate

    root = tmp_path_factory.mktemp("ui")
    simulate(root / "landing", users=40, titles=40, days=2, seed=5, dirty_rate=0.01)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["OTTP_DATA_DIR"] = str(root)
    port = _free_port()
    log = open(root / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ottp.cli", "ui", "--port", str(port)],
        cwd=config.REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # generous: on parallel test workers the start shares the CPUs with other tests
        _wait(lambda: _graphql(base, "{ version }")["data"]["version"], 600, "the webserver")
        yield base, root
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:  # `dagster dev` may outlive the CLI that started it
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(root / "dagster-dev.log", ARTIFACTS / "dagster-dev.log")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def _click_button(driver, label: str) -> bool:
    """Click the first enabled button with this label; False if there is none yet."""
    for button in driver.find_elements("tag name", "button"):
        if button.text.strip() == label and button.is_enabled():
            button.click()
            return True
    return False


def _dismiss_welcome(driver) -> None:
    # First visit: a newsletter dialog covers the page until it is skipped.
    try:
        _wait(lambda: _click_button(driver, "Skip"), 5, "the welcome dialog", interval=0.5)
    except AssertionError:
        pass


def test_the_asset_graph_shows_every_group(dagster_ui, browser):
    from orchestration.definitions import defs

    base, _ = dagster_ui
    groups = {spec.group_name for spec in defs().resolve_all_asset_specs()}
    browser.get(f"{base}/asset-groups")
    _dismiss_welcome(browser)
    text = _wait(
        lambda: (t := _page_text(browser)) and all(g in t for g in groups) and t,
        120,
        f"groups {sorted(groups)} in the asset graph",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "ui-asset-graph.png"))
    for group in groups:
        assert group in text


_LATEST_MATERIALIZATION = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) { timestamp runId } }
  }
}
"""


def _materialized_at(base: str, path: list[str]) -> float | None:
    data = _graphql(base, _LATEST_MATERIALIZATION, {"path": path})["data"]["assetOrError"]
    events = (data or {}).get("assetMaterializations") or []
    return float(events[0]["timestamp"]) / 1000 if events else None


def test_landing_files_reach_the_crm_with_nobody_clicking(dagster_ui, browser):
    # The daemon of `ottp ui`: the sensor starts ingest runs for the landing days,
    # then declarative automation builds marts, ML, exports, gates and the sync.
    base, _ = dagster_ui
    try:
        _wait(
            lambda: _materialized_at(base, ["crm", "crm_contacts"]),
            1500,
            "the CRM sync started by automation",
            interval=5,
        )
        _wait(
            lambda: _materialized_at(base, ["quality", "pipeline_report"]),
            300,
            "the pipeline report",
            interval=5,
        )
    finally:
        browser.get(f"{base}/runs")
        time.sleep(3)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "ui-runs-by-automation.png"))
    runs = _graphql(
        base,
        "{ runsOrError(limit: 50) { ... on Runs { results { status tags { key value } "
        "assetSelection { path } } } } }",
    )["data"]["runsOrError"]["results"]
    by_automation = [
        r for r in runs if any(t["key"] == "dagster/from_automation_condition" for t in r["tags"])
    ]
    assert by_automation, "no run was started by automation"
    # after the ingest, one automation run took the landing range from the marts to the
    # CRM (policies.IngestIdle), not a cascade of runs layer by layer
    selections = [{"/".join(a["path"]) for a in r["assetSelection"] or []} for r in by_automation]
    assert any({"marts/sessions", "crm/crm_contacts"} <= s for s in selections), selections
    # the report asset page shows its summary and the link to the HTML page
    browser.get(f"{base}/assets/quality/pipeline_report")
    _dismiss_welcome(browser)
    _wait(lambda: "pipeline.html" in _page_text(browser), 60, "the report's metadata")
    browser.save_screenshot(str(ARTIFACTS / "ui-pipeline-report.png"))


def test_a_materialization_launched_from_the_ui_succeeds(dagster_ui, browser):
    base, _ = dagster_ui
    # Unpartitioned, and its marts exist once automation has run (test above).
    browser.get(f"{base}/assets/bi/marts_snapshot")
    _dismiss_welcome(browser)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        _wait(lambda: _click_button(browser, "Materialize"), 120, "the Materialize button")
    finally:
        browser.save_screenshot(str(ARTIFACTS / "ui-asset-page.png"))

    # Runs launched from an asset page belong to the implicit asset job and carry
    # no automation tag.
    query = """
    { runsOrError(limit: 30) { ... on Runs { results { runId status jobName
        tags { key value } } } } }
    """

    def finished_run():
        runs = _graphql(base, query)["data"]["runsOrError"]["results"]
        done = [
            r
            for r in runs
            if r["jobName"] == "__ASSET_JOB"
            and not any(t["key"].startswith("dagster/from_automation") for t in r["tags"])
            and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
        ]
        return done[0] if done else None

    try:
        run = _wait(finished_run, 420, "the run launched from the UI", interval=2)
    finally:
        browser.save_screenshot(str(ARTIFACTS / "ui-after-launch.png"))
    browser.get(f"{base}/runs/{run['runId']}")
    _wait(
        lambda: "Success" in _page_text(browser) or run["status"] != "SUCCESS", 60, "the run page"
    )
    browser.save_screenshot(str(ARTIFACTS / "ui-run.png"))
    assert run["status"] == "SUCCESS", run
