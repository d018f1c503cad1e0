"""Latency of the live recommendations of a real ``ottp serve``, under intake load.

    python benchmarks/bench_recommend.py [--users 100000] [--titles 20000]
        [--rates 100,500] [--seconds 20] [--intake-rate 2000] [--viewers 100]
        [--k 10] [--seed 7] [--workers 1] [--redis] [--json]

**Bundle.** :func:`synthetic_warehouse` writes, with DuckDB and numpy (no loop per
user or title), just the relations ``publish_bundle`` and the serving model read:
the seeds' categories and thresholds; ``--titles`` titles (a fifth of them episodes
in series of five, 2% unavailable) with names; per user 12 valid plays of
popularity-skewed titles in sessions of three over the last four weeks; the
training values (one per distinct played title), 50 batch recommendations, ten
transitions per title, the lifecycle, segments, continue-watching and trigger
ledger. :func:`promote_synthetic_model` saves an ALS model of random factors (32)
in a model registry and promotes it. ``publish_bundle`` then writes the bundle
with its serving model, the code path of the Dagster asset.

**Server.** A real ``ottp serve`` (subprocess, its own temporary OTTP_DATA_DIR,
``--workers`` processes, default one) with ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` at 1: BLAS pinned to one thread. The
live state is embedded, or with ``--redis`` (implied by ``--workers`` over 1, where
the workers must share it) in a private ``redis-server`` the benchmark starts on a
free port, without persistence, and stops after. The server's CPU share counts
every process of the server (the workers too); Redis's is reported beside it.

**Load.** Open loop, at a fixed rate: a request is due every 1/rate seconds
whether or not the previous ones were answered; its latency counts from when it was
due, so a server that falls behind shows it (no coordinated omission). Requests
go to ``GET /v1/users/{id}/recommendations?k=--k`` for users drawn uniformly,
over a pool of keep-alive connections (the pool is bounded: a request due when
every connection is busy waits for one, and its wait is counted). Meanwhile an
intake generator POSTs ``--intake-rate`` events/s (batches of 100 rail
impressions, clicks and player events of other users, also open loop). Each rate
runs ``--seconds`` after a two-second warm-up; p50, p99 and max are reported with
the intake actually achieved.

**Event to recommendation.** For ``--viewers`` users, one at a time while the
intake load runs (and no other recommendation request): GET the recommendations,
POST a play of an episode (play_start and a heartbeat), then GET until the answer
differs from the one before the play (nothing else changes that user's answer);
the time from the POST to that answer, median and max, must stay under 1 s. The
report also counts the answers where the episode's next episode came first.

Results go to stdout (``--json``: only the JSON) and bench-results/bench_recommend.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from ottp import config  # noqa: E402

API_KEY = "bench-recommend-key"
PLAYS_PER_USER = 12
PLAYS_PER_SESSION = 3
RECOMMENDATIONS_PER_USER = 50
TRANSITIONS_PER_TITLE = 10
FACTORS = 32
EPISODES_PER_SERIES = 5
START_TIMEOUT_S = 120.0

# ---------------------------------------------------------------------------
# A synthetic warehouse and promoted model


def title_id(i) -> np.ndarray:
    return np.char.add("t_", np.char.zfill(np.asarray(i).astype(str), 5))


def user_id(i) -> np.ndarray:
    return np.char.add("u_", np.char.zfill(np.asarray(i).astype(str), 7))


def synthetic_warehouse(path: Path, users: int, titles: int, as_of: datetime, seed: int = 7):
    """The relations publish_bundle and write_serving_model read (see the module doc)."""
    con = duckdb.connect(str(path))
    try:
        for schema in ("reference", "marts", "exports", "ml"):
            con.execute(f"create schema if not exists {schema}")
        for seed_name in ("segment_thresholds", "categories"):
            con.execute(
                f"create table reference.{seed_name} as select * from read_csv(?, header = true)",
                [str(config.SEEDS_DIR / f"{seed_name}.csv")],
            )
        _titles(con, titles)
        con.register("bench_users", pa.table({"user_id": user_id(np.arange(users))}))
        con.execute(
            "create table users as select user_id, row_number() over () - 1 as v from bench_users"
        )
        _plays(con, titles, as_of.astimezone(UTC).replace(tzinfo=None), seed)
        _user_marts(con, as_of.astimezone(UTC).replace(tzinfo=None))
        _ml_tables(con, titles)
    finally:
        con.close()


def _titles(con: duckdb.DuckDBPyConnection, titles: int) -> None:
    """Titles with names and categories; the first fifth are series of five episodes."""
    i = np.arange(titles)
    categories = con.execute("select category from reference.categories order by 1").fetchall()
    categories = np.array([c[0] for c in categories])
    episode = i < titles // 5
    has_next = episode & (i % EPISODES_PER_SERIES < EPISODES_PER_SERIES - 1)
    table = pa.table(
        {
            "title_id": title_id(i),
            "title_name": np.char.add("Title ", i.astype(str)),
            "category": categories[i % len(categories)],
            "title_kind": np.where(episode, "episode", "movie"),
            "series_id": pa.array(
                np.char.add("s_", (i // EPISODES_PER_SERIES).astype(str)), mask=~episode
            ),
            "next_episode_title_id": pa.array(title_id(i + 1), mask=~has_next),
            "duration_s": np.full(titles, 3000.0),
            "is_episode": episode,
            "is_available": i % 50 != 49,
        }
    )
    con.register("bench_titles", table)
    con.execute("create table marts.titles as select * from bench_titles")


def _plays(con: duckdb.DuckDBPyConnection, titles: int, as_of: datetime, seed: int) -> None:
    """PLAYS_PER_USER valid plays per user, popularity-skewed, in sessions of three."""
    con.execute(
        f"""
        create table marts.plays as
        with drawn as (
            select u.user_id, u.v, k,
                   least(floor({titles} * pow((hash(u.v, k, {seed}) % 1000003) / 1000003.0, 2)),
                         {titles} - 1)::bigint as t
            from users u, range({PLAYS_PER_USER}) r(k)
        )
        select d.user_id, t.category, t.title_id, true as is_valid_play,
               'ses_' || d.v || '_' || (d.k // {PLAYS_PER_SESSION}) as session_id,
               $as_of - to_days(((d.v + d.k // {PLAYS_PER_SESSION} * 3) % 28)::integer)
                   - to_minutes((d.k % {PLAYS_PER_SESSION} * 50)::integer) as started_at
        from drawn d join marts.titles t on t.title_id = 't_' || lpad(d.t::varchar, 5, '0')
        """,
        {"as_of": as_of},
    )


def _user_marts(con: duckdb.DuckDBPyConnection, as_of: datetime) -> None:
    con.execute(
        "create table marts.user_category_segments as select user_id, category, "
        "'casual' as segment, count(distinct title_id) as titles_watched, false as is_fan "
        "from marts.plays group by all"
    )
    con.execute(
        "create table marts.user_lifecycle as select user_id, 'active' as lifecycle_stage, "
        "'active' as subscription_status, 'casual' as highest_segment, false as is_cancelled, "
        "false as is_deleted, $as_of - interval 2 day as last_play_at, $as_of as as_of_at "
        "from users",
        {"as_of": as_of},
    )
    con.execute(
        "create table marts.continue_watching as select user_id, title_id, "
        "600.0 as resume_position_s, 0.2 as resume_pct, 2400.0 as remaining_s, "
        "1::bigint as continue_rank, $as_of - interval 2 day as last_watched_at "
        "from marts.plays qualify row_number() over (partition by user_id order by title_id) = 1",
        {"as_of": as_of},
    )
    con.execute(
        "create table exports.crm_trigger_log as select md5(user_id) as trigger_id, "
        "user_id, 'at_risk' as scenario, user_id as subject_id from users"
    )


def _ml_tables(con: duckdb.DuckDBPyConnection, titles: int) -> None:
    """Training values, batch recommendations and title transitions."""
    con.execute(
        "create table ml.training_interactions as select user_id, title_id, "
        "1.0 + 0.5 * (count(*) - 1) as value, true as is_excluded from marts.plays group by all"
    )
    # distinct titles per user: the step 104729 is prime to any catalog size it divides not
    con.execute(
        f"""
        create table ml.recommendations as
        select u.user_id, 't_' || lpad(((u.v * 7919 + r * 104729) % {titles})::varchar, 5, '0')
                   as title_id,
               r::integer as rank, 'model' as source
        from users u, range(1, {RECOMMENDATIONS_PER_USER} + 1) x(r)
        """
    )
    con.execute(
        f"""
        create table marts.title_transitions as
        select 't_' || lpad(i::varchar, 5, '0') as from_title_id,
               't_' || lpad(((i + 1 + j * 37) % {titles})::varchar, 5, '0') as to_title_id,
               1.0 / (j + 1) as confidence, (j + 1)::integer as next_rank
        from range({titles}) a(i), range({TRANSITIONS_PER_TITLE}) b(j)
        """
    )


def promote_synthetic_model(warehouse: Path, models_dir: Path, seed: int = 7) -> str:
    """An ALS model of random factors over the warehouse's users and titles, saved in the
    registry at ``models_dir`` and promoted; its version."""
    from ml.models import ModelSpec, TrainedModel
    from ml.registry import Registry

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        users = con.sql("select user_id from marts.user_lifecycle order by 1").fetchnumpy()
        popularity = con.sql(
            "select t.title_id, count(p.title_id) as plays from marts.titles t "
            "left join marts.plays p using (title_id) group by 1 order by 1"
        ).fetchnumpy()
    finally:
        con.close()
    rng = np.random.default_rng(seed)
    spec = ModelSpec("als", {"factors": FACTORS})
    model = TrainedModel(
        spec=spec,
        n_items=len(popularity["title_id"]),
        popularity=np.asarray(popularity["plays"], dtype=np.float32),
        user_factors=rng.normal(0, 0.1, (len(users["user_id"]), FACTORS)).astype(np.float32),
        item_factors=rng.normal(0, 0.1, (len(popularity["title_id"]), FACTORS)).astype(np.float32),
    )
    registry = Registry(models_dir)
    metadata = {
        "params": spec.to_dict()["params"],
        "synthetic_seed": seed,
        "data_window": {},
        "code": {},
    }
    version = registry.new_version({**metadata, "nonce": uuid.uuid4().hex})
    registry.save(model, users["user_id"], popularity["title_id"], metadata, version=version)
    registry.record(version, {"passed": True, "reasons": ["synthetic model"]})
    return version


# ---------------------------------------------------------------------------
# The server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` on a free port, no persistence; stopped by :meth:`stop`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(self.data_dir)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


class Server:
    """``ottp serve`` in a subprocess on its own data folder, BLAS on one thread."""

    def __init__(
        self, data_dir: Path, bundle_dir: Path, workers: int = 1, redis_url: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = _free_port()
        self.env = config.child_env(
            {
                "OTTP_DATA_DIR": str(data_dir),
                "OTTP_LANDING_DIR": None,
                "OTTP_API_KEY": API_KEY,
                "OTTP_REDIS_URL": redis_url,
                "OTTP_BUNDLE_DIR": str(bundle_dir),
                "OTTP_WEBHOOK_URL": None,
                **{name: "1" for name in BLAS_THREADS},
            }
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "ottp.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with open(self.data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                health = json.loads(conn.getresponse().read())
                conn.close()
                # every worker up: each logs its startup once its bundle is loaded
                log = (self.data_dir / "server.log").read_text(errors="replace")
                started = log.count("Application startup complete")
                if health.get("bundle_version") and started >= self.workers:
                    return self
            except (OSError, ValueError):
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        log = (self.data_dir / "server.log").read_text(errors="replace")
        raise SystemExit(f"ottp serve did not get ready:\n{log[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------------------
# An open-loop HTTP/1.1 client (asyncio streams, keep-alive connections)


class Pool:
    """A bounded pool of keep-alive connections to the server."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.idle: asyncio.Queue = asyncio.Queue()
        self.opened = 0

    async def take(self):
        while True:
            if self.idle.empty() and self.opened < self.size:
                self.opened += 1
                return await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = await self.idle.get()
            if not reader.at_eof():
                return reader, writer
            writer.close()  # closed by the server while idle (its keep-alive timeout)
            self.opened -= 1

    def give(self, conn) -> None:
        self.idle.put_nowait(conn)

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request on a pooled connection; (status, body). A connection the server
        closed while idle (an end of stream or a reset before any byte of the answer) is
        replaced and the request sent again (once; intake drops a resent event_id); any
        other broken connection is replaced and the error raised (counted by the caller)."""
        try:
            return await self._request(head, body)
        except asyncio.IncompleteReadError as error:
            if error.partial:
                raise
            return await self._request(head, body)

    async def _request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self.take()
        try:
            writer.write(head + body)
            try:
                status_line = await reader.readuntil(b"\r\n")
            except (ConnectionResetError, BrokenPipeError) as error:
                raise asyncio.IncompleteReadError(b"", None) from error  # nothing answered
            length = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        self.give((reader, writer))
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


def get_head(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n\r\n").encode()


def post_head(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


async def open_loop(rate: float, seconds: float, send) -> list[float]:
    """Call ``send(i)`` at ``rate`` per second for ``seconds``, each as its own task, due at
    start + i / rate whatever the others do; the latencies counted from when each was due
    (NaN for a failed request)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int(rate * seconds)
    latencies = [float("nan")] * total

    async def one(i: int, due: float) -> None:
        try:
            await send(i)
            latencies[i] = loop.time() - due
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            pass

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies


# ---------------------------------------------------------------------------
# Events


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(event_type: str, user: str, at: datetime, **fields) -> str:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": "1.0",
        "occurred_at": _iso(at),
        "user_id": user,
        "device_id": "d_" + user,
        "platform": "web",
        **fields,
    }
    return json.dumps(event, separators=(",", ":"))


def intake_bodies(count: int, users: int, titles: int, seed: int) -> list[bytes]:
    """``count`` NDJSON bodies of 100 events of users other than the measured ones: a rail
    impression, a click and the player events of a playback, per viewer in turn."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    bodies = []
    for b in range(count):
        lines = []
        for v in rng.integers(users // 2, users, size=20):
            user = str(user_id(v))
            shown = [str(t) for t in title_id(rng.integers(0, titles, size=10))]
            playback = {"playback_id": uuid.uuid4().hex, "title_id": shown[0], "duration_s": 3000.0}
            at = now - timedelta(seconds=60 - b % 60)
            lines += [
                _line("rail_impression", user, at, properties={"rail": "x", "title_ids": shown}),
                _line("title_click", user, at, title_id=shown[0]),
                _line("play_start", user, at, position_s=0.0, **playback),
                _line("heartbeat", user, at + timedelta(seconds=30), position_s=30.0, **playback),
                _line("heartbeat", user, at + timedelta(seconds=60), position_s=60.0, **playback),
            ]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def play_body(user: str, title: str) -> bytes:
    at = datetime.now(UTC) - timedelta(seconds=90)
    playback = {"playback_id": uuid.uuid4().hex, "title_id": title, "duration_s": 3000.0}
    lines = [
        _line("play_start", user, at, position_s=0.0, **playback),
        _line("heartbeat", user, at + timedelta(seconds=60), position_s=60.0, **playback),
    ]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------
# Phases


def percentiles(latencies: list[float]) -> dict:
    done = np.array([x for x in latencies if x == x]) * 1000
    if not len(done):
        return {"requests": len(latencies), "failed": len(latencies)}
    return {
        "requests": len(latencies),
        "failed": len(latencies) - len(done),
        "p50_ms": round(float(np.percentile(done, 50)), 2),
        "p99_ms": round(float(np.percentile(done, 99)), 2),
        "max_ms": round(float(done.max()), 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return own + sum(cpu_seconds(c) for c in children)


class Load:
    """The two generators against one server: recommendations and intake."""

    def __init__(self, port: int, args: argparse.Namespace, bodies: list[bytes]) -> None:
        self.args = args
        self.recs = Pool(port, 64)
        self.intake = Pool(port, 8)
        self.bodies = iter(bodies)
        self.accepted = 0
        rng = np.random.default_rng(args.seed)
        measured = rng.integers(0, args.users // 2, size=20_000)
        self.heads = [
            get_head(f"/v1/users/{u}/recommendations?k={args.k}") for u in user_id(measured)
        ]

    async def recommend(self, i: int) -> None:
        status, _ = await self.recs.request(self.heads[i % len(self.heads)])
        if status != 200:
            raise ValueError(status)

    async def post(self, _: int) -> None:
        body = next(self.bodies)
        status, payload = await self.intake.request(post_head("/v1/events", body), body)
        if status != 200:
            raise ValueError(status)
        self.accepted += json.loads(payload)["accepted"]

    async def rate(self, rate: float, seconds: float) -> dict:
        """Recommendations at ``rate`` and intake at --intake-rate, after a 2 s warm-up."""
        intake_rate = self.args.intake_rate / 100
        await asyncio.gather(
            open_loop(rate, 2, self.recommend), open_loop(intake_rate, 2, self.post)
        )
        self.accepted = 0
        began = time.monotonic()
        latencies, posts = await asyncio.gather(
            open_loop(rate, seconds, self.recommend), open_loop(intake_rate, seconds, self.post)
        )
        elapsed = time.monotonic() - began
        return {
            "rate": rate,
            **percentiles(latencies),
            "intake_events_per_s": round(self.accepted / elapsed),
            "intake_post": percentiles(posts),
        }

    async def event_to_recommendation(self, viewers: int) -> dict:
        """For each viewer: a play of an episode, then GETs until its next episode shows."""
        stop = asyncio.Event()

        async def intake() -> None:
            while self.args.intake_rate > 0 and not stop.is_set():
                await open_loop(self.args.intake_rate / 100, 1, self.post)

        background = asyncio.ensure_future(intake())
        latencies, gets, late, next_first = [], [], 0, 0
        episodes = self.args.titles // 5 // EPISODES_PER_SERIES
        try:
            for v in range(viewers):
                user = str(user_id(v))
                episode = EPISODES_PER_SERIES * (v % episodes) + 1
                watched, following = str(title_id(episode)), str(title_id(episode + 1))
                path = f"/v1/users/{user}/recommendations?k={self.args.k}"
                _, payload = await self.recs.request(get_head(path))
                before = _items(payload)
                body = play_body(user, watched)
                began = time.monotonic()
                status, _ = await self.intake.request(post_head("/v1/events", body), body)
                if status != 200:
                    raise SystemExit(f"the play was refused: {status}")
                n = 0
                while True:
                    _, payload = await self.recs.request(get_head(path))
                    n += 1
                    items = _items(payload)
                    if items != before:
                        break
                    if time.monotonic() - began > 10:
                        raise SystemExit(f"the play of {watched} never showed for {user}")
                latency = time.monotonic() - began
                next_first += items[0] == following
                late += latency > 1.0
                latencies.append(latency)
                gets.append(n)
        finally:
            stop.set()
            await background
        return {
            "viewers": len(latencies),
            **{k: v for k, v in percentiles(latencies).items() if k != "p99_ms"},
            "over_1s": late,
            "gets_needed_max": max(gets, default=0),
            "next_episode_first": next_first,
        }


def _items(payload: bytes) -> list[str]:
    return [item["title_id"] for item in json.loads(payload)["items"]]


# ---------------------------------------------------------------------------
# Main


def _sizes(args: argparse.Namespace) -> list[int]:
    return [args.users, args.titles, args.seed]


def _reused(root: Path, args: argparse.Namespace) -> dict | None:
    """What an earlier run built in ``root`` with the same sizes, if it did."""
    try:
        built = json.loads((root / "built.json").read_text())
    except (OSError, ValueError):
        return None
    return built if built.pop("sizes", None) == _sizes(args) else None


def build_bundle(root: Path, args: argparse.Namespace) -> dict:
    began = time.perf_counter()
    synthetic_warehouse(
        root / "warehouse.duckdb",
        args.users,
        args.titles,
        datetime.now(UTC) - timedelta(days=1),
        args.seed,
    )
    generated = time.perf_counter() - began
    promote_synthetic_model(root / "warehouse.duckdb", root / "models", args.seed)
    from ottp.realtime import bundle

    began = time.perf_counter()
    info = bundle.publish_bundle(
        root / "warehouse.duckdb", root / "serving", models_dir=root / "models"
    )
    return {
        "generate_s": round(generated, 1),
        "publish_s": round(time.perf_counter() - began, 1),
        "bundle_mb": round(info.bytes / 1e6, 1),
        "model_version": info.model_version,
    }


async def measure(
    server: Server, args: argparse.Namespace, redis_server: RedisServer | None = None
) -> dict:
    seconds_in_all = (2 + args.seconds) * len(args.rates) + args.viewers * 2
    bodies = intake_bodies(
        int(seconds_in_all * args.intake_rate / 100) + 100, args.users, args.titles, args.seed
    )
    load = Load(server.port, args, bodies)
    out: dict = {"rates": []}
    try:
        for rate in args.rates:
            cpu = cpu_seconds(server.process.pid)
            redis_cpu = cpu_seconds(redis_server.process.pid) if redis_server else 0.0
            load_cpu = time.process_time()
            began = time.monotonic()
            result = await load.rate(rate, args.seconds)
            elapsed = time.monotonic() - began
            result["server_cpu_share"] = round((cpu_seconds(server.process.pid) - cpu) / elapsed, 2)
            if redis_server:
                redis_cpu = cpu_seconds(redis_server.process.pid) - redis_cpu
                result["redis_cpu_share"] = round(redis_cpu / elapsed, 2)
            result["load_generator_cpu_share"] = round(
                (time.process_time() - load_cpu) / elapsed, 2
            )
            result["load_average_1m"] = round(os.getloadavg()[0], 1)
            out["rates"].append(result)
            _say(args, f"{rate:>5} req/s: {result}")
        out["event_to_recommendation"] = await load.event_to_recommendation(args.viewers)
        _say(args, f"event to recommendation: {out['event_to_recommendation']}")
    finally:
        load.recs.close()
        load.intake.close()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--titles", type=int, default=20_000)
    parser.add_argument("--rates", default="100,500", help="recommendation requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate, after a warm-up")
    parser.add_argument("--intake-rate", type=int, default=2000, help="events per second")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="ottp serve --workers")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="live state in a private redis-server (implied by --workers over 1)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the warehouse and bundle in this folder and reuse them when it holds "
        "one of the same sizes (default: a temporary folder, removed after)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    args.redis = args.redis or args.workers > 1
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-recommend-"))
    server = redis_server = None
    try:
        built = _reused(root, args)
        if built is None:
            _say(args, f"building a bundle of {args.users:,} users and {args.titles:,} titles")
            root.mkdir(parents=True, exist_ok=True)
            for old in ("models", "serving"):
                shutil.rmtree(root / old, ignore_errors=True)
            (root / "warehouse.duckdb").unlink(missing_ok=True)
            built = build_bundle(root, args)
            (root / "built.json").write_text(json.dumps({**built, "sizes": _sizes(args)}))
        _say(args, f"bundle: {built}")
        shutil.rmtree(root / "data", ignore_errors=True)
        if args.redis:
            redis_server = RedisServer(root / "data" / "redis").start()
        redis_url = redis_server.url if redis_server else None
        server = Server(root / "data", root / "serving", args.workers, redis_url).start()
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "processor": _cpu_model(),
                "python": platform.python_version(),
            },
            "args": {
                k: str(v) if isinstance(v, Path) else v
                for k, v in vars(args).items()
                if k != "json"
            },
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average_before": [round(x, 1) for x in os.getloadavg()],
            "bundle": built,
            **asyncio.run(measure(server, args, redis_server)),
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
        }
    except BaseException:
        log = root / "data" / "server.log"
        if log.exists():
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        if redis_server is not None:
            redis_server.stop()
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    out = REPO / "bench-results" / "bench_recommend.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else f"written to {out}")


if __name__ == "__main__":
    main()
