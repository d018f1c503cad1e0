"""Event-to-profile latency of a real ``ottp serve``, and the live state's memory per actor.

    python benchmarks/bench_realtime.py [--viewers 200] [--bundle-users 10000]
        [--backends memory,redis] [--redis-db 13] [--clients 1]
        [--load-clients 0] [--memory-users 2000] [--memory-days 1] [--seed 7]
        [--skip-memory] [--json]

**Latency.** A synthetic warehouse holds just the marts ``publish_bundle`` reads
(the segment thresholds of seeds/segment_thresholds.csv; ``--bundle-users`` users,
each of whom validly played one title fewer of ``drama`` than a fan has, plus a
few titles of other categories); ``publish_bundle`` writes the serving bundle from
it, the code path the Dagster asset runs. For each backend a real server starts
(a subprocess, its own temporary OTTP_DATA_DIR, that bundle; Redis:
``redis://127.0.0.1:6379/<--redis-db>``, flushed before and after). For each of
``--viewers`` viewers, the benchmark POSTs the three player events of a play of
one more drama title (play_start, a heartbeat, a stop after 120 s: a valid play)
and GETs the profile until it says ``fan`` of drama. The latency is from the POST
to the answer that says fan; p50, p99 and max are reported, with the POST's own
latency and the GETs it took. ``--load-clients N`` adds intake load meanwhile: N
more connections, each POSTing batches of 100 new heartbeats as fast as answered
(from the same process, so on a small machine the load generator, the measuring
client and the server share the cores).

The bundle's own figures come with it: ``publish_bundle``'s time and Parquet
bytes, ``load_bundle``'s time (3 loads) and what a loaded bundle holds (Python
objects and numpy arrays under tracemalloc, plus Arrow's buffers), one profile's
build from it without live state (the mean over up to 1,000 users), and the
server's resident memory after the run.

**Memory per active actor.** The simulator writes ``--memory-days`` of events for
``--memory-users`` users (no dirty lines); the first copy of each event_id is
applied in arrival order, 100 per call, as the server does: embedded, under
tracemalloc (each batch parsed from its lines inside the traced window, so the
state's strings are counted, not shared with events held outside it), divided by
the actors held; Redis, ``MEMORY USAGE`` of every actor key. The time per
``apply`` of 100 events is reported for both (measured without tracemalloc).

Results go to stdout (``--json``: only the JSON) and to bench-results/bench_realtime.json.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import redis  # noqa: E402

from ottp import config  # noqa: E402
from ottp.contract import rules as contract_rules  # noqa: E402
from ottp.ingest import landing  # noqa: E402
from ottp.realtime import bundle as bundles  # noqa: E402
from ottp.realtime.redis_state import KEY_PREFIX, RedisState  # noqa: E402
from ottp.realtime.state import MemoryState  # noqa: E402

API_KEY = "bench-realtime-key"
CATEGORY = "drama"
TITLES_PER_CATEGORY = 40
OTHER_PLAYS = 3
BATCH = 100
PROFILE_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
PLAYER = {
    "schema_version": "1.0",
    "device_id": "d_bench",
    "platform": "web",
    "app_version": "5.2.0",
    "country": "FR",
    "duration_s": 3000.0,
    "properties": None,
}


# ---------------------------------------------------------------------------
# The serving bundle, from synthetic marts


def synthetic_warehouse(path: Path, users: int, as_of: datetime) -> dict:
    """The tables publish_bundle reads: each user one drama title short of a fan.

    The categories and thresholds are the seeds; the rest is generated here."""
    categories = list(contract_rules.title_categories())
    if CATEGORY not in categories:
        raise SystemExit(f"no {CATEGORY!r} category in seeds/categories.csv")
    categories.remove(CATEGORY)
    seed = config.SEEDS_DIR / "segment_thresholds.csv"
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema reference; create schema marts; create schema exports")
        con.execute(
            "create table reference.segment_thresholds as select * from read_csv(?, header = true)",
            [str(seed)],
        )
        fan_min = con.execute(
            "select min_titles_watched from reference.segment_thresholds where segment = 'fan'"
        ).fetchone()[0]
        if TITLES_PER_CATEGORY <= fan_min:
            raise SystemExit(f"{TITLES_PER_CATEGORY} titles per category, a fan needs {fan_min}")
        con.execute(
            "create table marts.titles as select "
            "'t_' || c.i || '_' || lpad(t.j::varchar, 3, '0') as title_id, c.category, "
            "'movie' as title_kind, null::varchar as series_id, "
            "null::varchar as next_episode_title_id, 3000.0 as duration_s, "
            "false as is_episode, true as is_available "
            "from (select unnest(?) as category, generate_subscripts(?, 1) as i) c, "
            "range(?) t(j)",
            [[CATEGORY, *categories], [CATEGORY, *categories], TITLES_PER_CATEGORY],
        )
        con.execute(
            "create table reference.categories as select * from read_csv(?, header = true)",
            [str(config.SEEDS_DIR / "categories.csv")],
        )
        con.execute(
            "create table bench_users as select 'u_bench_' || lpad(v::varchar, 7, '0') "
            "as user_id, v from range(?) r(v)",
            [users],
        )
        _synthetic_marts(con, fan_min, as_of)
    finally:
        con.close()
    return {"users": users, "fan_min_titles": int(fan_min), "as_of": as_of.isoformat()}


def _synthetic_marts(con: duckdb.DuckDBPyConnection, fan_min: int, as_of: datetime) -> None:
    """Per user: fan_min - 1 drama titles and OTHER_PLAYS others played validly."""
    naive = as_of.astimezone(UTC).replace(tzinfo=None)
    con.execute(
        "create table marts.plays as "
        "select u.user_id, t.category, t.title_id, true as is_valid_play "
        "from bench_users u, range(?) k(k), marts.titles t "
        "where t.title_id = 't_1_' || lpad(((u.v + k.k) % ?)::varchar, 3, '0') "
        "union all "
        "select u.user_id, t.category, t.title_id, true from bench_users u, range(?) k(k), "
        "marts.titles t where t.title_id = 't_' || (2 + (u.v + k.k) % 3) || '_' "
        "|| lpad(((u.v * 7 + k.k) % ?)::varchar, 3, '0')",
        [fan_min - 1, TITLES_PER_CATEGORY, OTHER_PLAYS, TITLES_PER_CATEGORY],
    )
    con.execute(
        "create table marts.user_category_segments as select user_id, category, "
        "'casual' as segment, count(distinct title_id) as titles_watched, false as is_fan "
        "from marts.plays group by all"
    )
    con.execute(
        "create table marts.user_lifecycle as select user_id, 'active' as lifecycle_stage, "
        "'active' as subscription_status, 'casual' as highest_segment, false as is_cancelled, "
        "false as is_deleted, $as_of - interval 2 day as last_play_at, $as_of as as_of_at "
        "from bench_users",
        {"as_of": naive},
    )
    con.execute(
        "create table marts.continue_watching as select p.user_id, p.title_id, "
        "600.0 as resume_position_s, 0.2 as resume_pct, 2400.0 as remaining_s, "
        "1::bigint as continue_rank, $as_of - interval 2 day as last_watched_at "
        "from marts.plays p where p.category <> $category "
        "qualify row_number() over (partition by p.user_id order by p.title_id) = 1",
        {"as_of": naive, "category": CATEGORY},
    )
    con.execute(
        "create table exports.crm_trigger_log as select md5(user_id) as trigger_id, "
        "user_id, 'at_risk' as scenario, user_id as subject_id from bench_users"
    )
    # who a live trigger may concern: every user, a contact, none deleted
    con.execute("create schema if not exists raw")
    con.execute("create table raw.deleted_users (user_id varchar, pseudonym varchar)")
    con.execute("create table marts.users as select user_id, false as is_deleted from bench_users")
    con.execute("create table exports.crm_contacts as select user_id from bench_users")


def bundle_run(bundle_dir: Path, users: int) -> dict:
    """load_bundle's time and memory (tracemalloc and Arrow's pool); one profile's build."""
    import pyarrow as pa

    from ottp.realtime import profile

    load_s = []
    for _ in range(3):
        began = time.perf_counter()
        loaded = bundles.load_bundle(bundle_dir)
        load_s.append(time.perf_counter() - began)
        del loaded
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loaded = bundles.load_bundle(bundle_dir)
        python_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    arrow_bytes = pa.total_allocated_bytes() - arrow_before
    sample = range(0, users, max(1, users // 1000))
    began = time.perf_counter()
    for viewer in sample:
        if profile.build_profile(loaded, user_id(viewer), None) is None:
            raise SystemExit("a bundle user has no profile")
    build_ms = 1000 * (time.perf_counter() - began) / len(sample)
    return {
        "load_bundle_s": [round(x, 2) for x in load_s],
        "loaded_mib": round((python_bytes + arrow_bytes) / 2**20, 1),
        "loaded_python_mib": round(python_bytes / 2**20, 1),
        "loaded_arrow_mib": round(arrow_bytes / 2**20, 1),
        "build_profile_ms": round(build_ms, 3),
    }


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def user_id(viewer: int) -> str:
    return f"u_bench_{viewer:07d}"


def live_title(viewer: int, fan_min: int) -> str:
    """The drama title whose valid play makes the viewer a fan: one not played before."""
    return f"t_1_{(viewer + fan_min - 1) % TITLES_PER_CATEGORY:03d}"


# ---------------------------------------------------------------------------
# A real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ottp serve`` in a subprocess on its own data folder, with the given bundle."""

    def __init__(self, data_dir: Path, bundle_dir: Path, redis_url: str | None) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.backend = "redis" if redis_url else "memory"
        self.env = config.child_env(
            {
                "OTTP_DATA_DIR": str(data_dir),
                "OTTP_LANDING_DIR": None,
                "OTTP_API_KEY": API_KEY,
                "OTTP_REDIS_URL": redis_url,
                "OTTP_BUNDLE_DIR": str(bundle_dir),
                "OTTP_WEBHOOK_URL": None,
            }
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ottp.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port)]  # fmt: skip
        with open(self.data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                status, payload = request(self.connect(), "GET", "/health")
                health = json.loads(payload) if status == 200 else {}
                if health.get("bundle_version") and health.get("state_backend") == self.backend:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        log = (self.data_dir / "server.log").read_text(errors="replace")
        raise SystemExit(f"ottp serve ({self.backend}) did not get ready:\n{log[-3000:]}")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    headers = {"X-API-Key": API_KEY}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


# ---------------------------------------------------------------------------
# Event-to-profile latency


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def play_body(user: str, title: str, start: datetime) -> bytes:
    """A 120 s play (valid: the rule is 30 s): play_start, a heartbeat, a stop."""
    playback = f"pb_{uuid.uuid4().hex[:12]}"
    events = [
        {**PLAYER, "event_id": str(uuid.uuid4()), "event_type": kind, "user_id": user,
         "playback_id": playback, "title_id": title, "position_s": float(offset),
         "occurred_at": _iso(start + timedelta(seconds=offset))}
        for kind, offset in (("play_start", 0), ("heartbeat", 60), ("stop", 120))
    ]  # fmt: skip
    return json.dumps(events).encode()


def _is_fan(status: int, payload: bytes) -> bool:
    if status != 200:
        raise RuntimeError(f"profile answered {status}: {payload[:200]!r}")
    return CATEGORY in json.loads(payload)["fan_categories"]


def make_fans(server: Server, viewers: list[int], fan_min: int, out: list) -> None:
    """Per viewer: a GET (not a fan yet), the POST of the play, GETs until it says fan."""
    conn = server.connect()
    try:
        for viewer in viewers:
            user = user_id(viewer)
            profile = f"/v1/users/{user}/profile"
            if _is_fan(*request(conn, "GET", profile)):
                raise RuntimeError("a viewer is a fan before the play")
            body = play_body(
                user, live_title(viewer, fan_min), datetime.now(UTC) - timedelta(minutes=5)
            )
            started = time.perf_counter()
            status, payload = request(conn, "POST", "/v1/events", body)
            posted = time.perf_counter() - started
            if status != 200 or json.loads(payload)["accepted"] != 3:
                raise RuntimeError(f"intake answered {status}: {payload[:300]!r}")
            gets = 1
            while not _is_fan(*request(conn, "GET", profile)):
                if time.perf_counter() - started > PROFILE_TIMEOUT_S:
                    raise RuntimeError(f"no fan after {PROFILE_TIMEOUT_S} s")
                gets += 1
            out.append((time.perf_counter() - started, posted, gets))
    finally:
        conn.close()


def background_load(server: Server, stop: threading.Event, client: int, sent: list) -> None:
    """Intake load beside the measurement: batches of 100 new heartbeats, closed loop."""
    conn = server.connect()
    start = datetime.now(UTC) - timedelta(hours=1)
    count = 0
    try:
        while not stop.is_set():
            events = [
                {**PLAYER, "event_id": str(uuid.uuid4()), "event_type": "heartbeat",
                 "user_id": f"u_load_{client}_{i % 10}",
                 "playback_id": f"pb_load_{client}_{i % 10}",
                 "title_id": "t_2_000", "position_s": float(60 + i % 1800),
                 "occurred_at": _iso(start + timedelta(seconds=i % 1800))}
                for i in range(count, count + BATCH)
            ]  # fmt: skip
            status, payload = request(conn, "POST", "/v1/events", json.dumps(events).encode())
            if status != 200:
                raise RuntimeError(f"intake answered {status}: {payload[:300]!r}")
            count += BATCH
    finally:
        conn.close()
        sent.append(count)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def latency_run(backend: str, root: Path, bundle_dir: Path, args, fan_min: int) -> dict:
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}" if backend == "redis" else None
    client = redis.Redis.from_url(redis_url) if redis_url else None
    if client is not None:
        client.flushdb()
    server = Server(root / f"data-{backend}", bundle_dir, redis_url).start()
    load_before = os.getloadavg()
    out: list = []
    try:
        warm = server.connect()  # the first requests pay imports and connection set-up
        for viewer in range(args.viewers, min(args.viewers + 20, args.bundle_users)):
            request(warm, "GET", f"/v1/users/{user_id(viewer)}/profile")
        warm.close()
        stop, sent = threading.Event(), []
        loaders = [
            threading.Thread(target=background_load, args=(server, stop, k, sent))
            for k in range(args.load_clients)
        ]
        for thread in loaders:
            thread.start()
        began = time.perf_counter()
        viewers = list(range(args.viewers))
        threads = [
            threading.Thread(
                target=make_fans, args=(server, viewers[k :: args.clients], fan_min, out)
            )
            for k in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        for thread in loaders:
            thread.join()
        load_seconds = time.perf_counter() - began
        server_rss = rss_mib(server.process.pid)
    finally:
        stop.set()
        server.stop()
        if client is not None:
            client.flushdb()
            client.close()
    if len(out) != args.viewers:
        raise SystemExit(f"{backend}: {args.viewers - len(out)} viewers failed (see above)")
    latencies = [1000 * x for x, _, _ in out]
    posts = [1000 * p for _, p, _ in out]
    return {
        "backend": backend,
        "viewers": len(out),
        "clients": args.clients,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "post_p50_ms": round(percentile(posts, 50), 1),
        "post_p99_ms": round(percentile(posts, 99), 1),
        "gets_per_viewer_max": max(g for _, _, g in out),
        "server_rss_mib": server_rss,
        "load_clients": args.load_clients,
        "load_events_per_s": round(sum(sent) / load_seconds),
        "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],
    }


# ---------------------------------------------------------------------------
# Memory per active actor


def simulated_lines(root: Path, users: int, days: int, seed: int) -> list[bytes]:
    """The simulator's event lines, first copy of each event_id, in arrival order."""
    from ottp.simulator import simulate

    simulate(root / "sim", users=users, titles=max(300, users // 10), days=days, seed=seed)
    keyed = {}
    for found in landing.discover(root / "sim"):
        if found.kind != "events":
            continue
        with gzip.open(found.path, "rb") as handle:
            for line in handle:
                event = json.loads(line)
                key = (event.get("received_at") or "", event["occurred_at"])
                keyed.setdefault(event["event_id"], (key, line))
    return [line for _, line in sorted(keyed.values(), key=lambda kl: kl[0])]


def _feed(state, lines: list[bytes]) -> list[float]:
    """Apply the lines 100 at a time (each batch parsed here); the seconds per apply."""
    seconds = []
    for start in range(0, len(lines), BATCH):
        events = [json.loads(line) for line in lines[start : start + BATCH]]
        began = time.perf_counter()
        state.apply(events)
        seconds.append(time.perf_counter() - began)
    return seconds


def memory_run(root: Path, args) -> dict:
    lines = simulated_lines(root, args.memory_users, args.memory_days, args.seed)
    timed = MemoryState()
    memory_apply = _feed(timed, lines)
    actors = len(timed)
    traced = MemoryState()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _feed(traced, lines)
        in_process = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    url = f"redis://127.0.0.1:6379/{args.redis_db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    shared = RedisState(url)
    try:
        redis_apply = _feed(shared, lines)
        sizes = [
            client.memory_usage(key, samples=0)
            for key in client.scan_iter(match=KEY_PREFIX + "*", count=1000)
        ]
    finally:
        shared.close()
        client.flushdb()
        client.close()
    if len(sizes) != actors or len(traced) != actors:
        raise SystemExit(f"actors: {actors} in memory, {len(sizes)} keys in Redis")
    return {
        "simulated_users": args.memory_users,
        "days": args.memory_days,
        "events": len(lines),
        "actors": actors,
        "anonymous_actors": sum(1 for s in timed.states() if s.actor_id.startswith("device:")),
        "embedded_bytes_per_actor": round(in_process / actors),
        # of which the digests of the actor's last event_ids (the resend guard)
        "embedded_seen_ids_bytes_per_actor": round(
            statistics.mean(sys.getsizeof(s.seen) for s in timed.states())
        ),
        "redis_bytes_per_key_mean": round(statistics.mean(sizes)),
        "redis_bytes_per_key_median": round(statistics.median(sizes)),
        "redis_bytes_per_key_p99": percentile(sizes, 99),
        "redis_bytes_per_key_max": max(sizes),
        "apply_100_ms_embedded_median": round(1000 * statistics.median(memory_apply), 2),
        "apply_100_ms_redis_median": round(1000 * statistics.median(redis_apply), 2),
    }


# ---------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def _report(result: dict) -> None:
    print(f"machine: {result['machine']}; load average at start {result['load_average_start']}")
    b = result["bundle"]
    print(
        f"bundle ({b['users']} users): publish_bundle {b['publish_s']} s, {b['bytes']} B of "
        f"Parquet; load_bundle {b['load_bundle_s']} s, {b['loaded_mib']} MiB loaded; "
        f"a profile built in {b['build_profile_ms']} ms"
    )
    for run in result["latency"]:
        print(
            f"event-to-profile ({run['backend']}, {run['viewers']} viewers, "
            f"{run['clients']} client(s)): p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
            f"max {run['max_ms']} ms; POST p50 {run['post_p50_ms']} ms; "
            f"GETs per viewer at most {run['gets_per_viewer_max']}; server RSS "
            f"{run['server_rss_mib']} MiB; beside "
            f"{run['load_events_per_s']} events/s of intake from {run['load_clients']} "
            f"client(s); load average {run['load_average']}"
        )
    m = result.get("memory")
    if m:
        print(
            f"memory ({m['events']} events, {m['actors']} actors, {m['days']} day(s)): "
            f"embedded {m['embedded_bytes_per_actor']} B/actor (event-id digests "
            f"{m['embedded_seen_ids_bytes_per_actor']} B of it); Redis per key mean "
            f"{m['redis_bytes_per_key_mean']} B, median {m['redis_bytes_per_key_median']} B, "
            f"p99 {m['redis_bytes_per_key_p99']} B, max {m['redis_bytes_per_key_max']} B; "
            f"apply of 100 events: embedded {m['apply_100_ms_embedded_median']} ms, "
            f"Redis {m['apply_100_ms_redis_median']} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--bundle-users", type=int, default=10_000)
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument(
        "--load-clients", type=int, default=0, help="intake load beside it (batches of 100)"
    )
    parser.add_argument("--memory-users", type=int, default=2000)
    parser.add_argument("--memory-days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - {"memory", "redis"} or not 0 < args.viewers <= args.bundle_users:
        parser.error("--backends: memory and/or redis; 0 < --viewers <= --bundle-users")
    args.clients = max(1, min(args.clients, args.viewers))
    root = Path(tempfile.mkdtemp(prefix="ottp-bench-realtime-"))
    result: dict = {
        "command": " ".join(["python", "benchmarks/bench_realtime.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        as_of = datetime.now(UTC) - timedelta(hours=1)
        made = synthetic_warehouse(root / "warehouse.duckdb", args.bundle_users, as_of)
        info = bundles.publish_bundle(root / "warehouse.duckdb", root / "serving")
        result["bundle"] = {**made, "version": info.version, "rows": info.rows,
                            "bytes": info.bytes, "publish_s": info.seconds,
                            **bundle_run(root / "serving", args.bundle_users)}  # fmt: skip
        result["latency"] = [
            latency_run(b, root, root / "serving", args, made["fan_min_titles"]) for b in backends
        ]
        if not args.skip_memory:
            result["memory"] = memory_run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _report(result)
    out = REPO / "bench-results" / "bench_realtime.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
