"""A real ``ottp serve`` (uvicorn in a subprocess) for the real-time tests, talked to over HTTP.

``realtime_server(env=..., api_key=..., data_dir=...)`` starts one and waits
until ``/health`` answers; every server started is stopped at teardown. The
same object can be killed (SIGKILL) and started again on the same data.
``recommend_warehouse`` is a small synthetic warehouse with a promoted model and a
serving bundle published from them (the live recommendations' tests).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import requests

from ottp import config

API_KEY = "test-key-0123456789"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """One ``ottp serve`` process on its own data folder and port."""

    data_dir: Path
    env: dict[str, str]
    api_key: str | None
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def headers(self, **extra: str) -> dict[str, str]:
        return {**({"X-API-Key": self.api_key} if self.api_key else {}), **extra}

    def post_events(
        self,
        body: bytes | str | list | Iterator[bytes],
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """POST /v1/events: a list as a JSON array, bytes or str as they are (with the key)."""
        sent = self.headers(**(headers or {}))
        if isinstance(body, list):
            return self.session.post(f"{self.url}/v1/events", json=body, headers=sent, timeout=30)
        if content_type:
            sent["Content-Type"] = content_type
        data = body.encode() if isinstance(body, str) else body
        return self.session.post(f"{self.url}/v1/events", data=data, headers=sent, timeout=30)

    def start(self) -> RunningServer:
        cmd = [sys.executable, "-m", "ottp.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), *self.args]  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=config.REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            try:  # the poll's pace, and a server that died says so at once
                code = self.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"ottp serve exited with {code}:\n{self.log()[-3000:]}")
        raise AssertionError(f"ottp serve not healthy after {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown closes the landing file) and wait."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


class ServerFactory:
    """Starts servers on fresh data folders (or a given one) and stops them all at the end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.started: list[RunningServer] = []

    def __call__(
        self,
        env: Mapping[str, str | None] | None = None,
        *,
        api_key: str | None = API_KEY,
        data_dir: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> RunningServer:
        data_dir = data_dir or self._tmp.mktemp("realtime")
        variables = {
            "OTTP_DATA_DIR": str(data_dir),
            "OTTP_LANDING_DIR": None,
            "OTTP_REDIS_URL": None,
            "OTTP_API_KEY": api_key,
            **(env or {}),
        }
        extra = args if api_key else ("--insecure-no-key", *args)
        server = RunningServer(data_dir, config.child_env(variables), api_key, tuple(extra))
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.started:
            server.stop()
            server.session.close()


@pytest.fixture
def realtime_server(tmp_path_factory) -> Iterator[ServerFactory]:
    """A factory: ``realtime_server(env={...}, api_key=..., data_dir=..., args=(...))``.

    ``env`` adds variables (``OTTP_REDIS_URL``, ``OTTP_BUNDLE_DIR``...; None unsets one)
    to this process's environment; OTTP_DATA_DIR is a fresh folder unless ``data_dir``
    is given. ``api_key=None`` starts it with ``--insecure-no-key``. Every server it
    started is stopped at the end of the test.
    """
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def realtime_server_module(tmp_path_factory) -> Iterator[ServerFactory]:
    """``realtime_server`` whose servers live for the whole test module (one start, many tests)."""
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@dataclass(frozen=True)
class RecommendWarehouse:
    """A synthetic warehouse (benchmarks/bench_recommend.py), its promoted model and a
    bundle published from both."""

    root: Path
    warehouse: Path
    models_dir: Path
    bundle_dir: Path
    model_version: str
    bundle_version: str
    deleted_user: str


@pytest.fixture(scope="session")
def recommend_warehouse(tmp_path_factory) -> RecommendWarehouse:
    """40 users, 60 titles (the first 12 episodes of series of five), one user deleted."""
    from benchmarks.bench_recommend import promote_synthetic_model, synthetic_warehouse
    from ottp.realtime import bundle

    root = tmp_path_factory.mktemp("recommend")
    warehouse = root / "warehouse.duckdb"
    synthetic_warehouse(warehouse, users=40, titles=60, as_of=datetime(2026, 8, 10, tzinfo=UTC))
    deleted = "u_0000039"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "update marts.user_lifecycle set is_deleted = true where user_id = ?", [deleted]
        )
    finally:
        con.close()
    model_version = promote_synthetic_model(warehouse, root / "models")
    info = bundle.publish_bundle(warehouse, root / "serving", models_dir=root / "models")
    return RecommendWarehouse(
        root, warehouse, root / "models", root / "serving", model_version, info.version, deleted
    )
