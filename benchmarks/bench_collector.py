"""Sustained intake of one ``ottp serve`` process: events/s in batches of 100, request latency.

    python benchmarks/bench_collector.py [--clients 8] [--seconds 10] [--runs 3]
                                         [--batch 100] [--workers 1]

Starts a real server (uvicorn, its own temporary OTTP_DATA_DIR, embedded live
state) and drives it with a bounded, closed-loop load: ``--clients`` threads,
each with one keep-alive HTTP connection, each sending its next batch when the
previous one is answered (so the answer, sent after the fsync, paces it). Every
batch holds new event ids. After a warm-up, each run lasts ``--seconds``; the
median of ``--runs`` runs is reported with p50 and p99 request latency, and the
server's own CPU seconds (from /proc), since on a small shared machine the load
generator competes with the server for the same cores.

Results are also written to bench-results/bench_collector.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402

API_KEY = "bench-key"
EVENT = {
    "event_type": "heartbeat",
    "schema_version": "1.0",
    "occurred_at": "2026-12-01T10:00:00.000Z",
    "user_id": "u_000001",
    "device_id": "d_0000001",
    "platform": "web",
    "app_version": "5.2.0",
    "country": "FR",
    "playback_id": "p_1",
    "title_id": "t_00001",
    "position_s": 60.0,
    "duration_s": 5400.0,
    "properties": None,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = config.child_env(
        {"OTTP_DATA_DIR": str(data_dir), "OTTP_API_KEY": API_KEY, "OTTP_REDIS_URL": None}
    )
    cmd = [sys.executable, "-m", "ottp.cli", "serve", "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 (the server's whole life)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit((data_dir / "server.log").read_text())


def batch_body(size: int, user: int) -> bytes:
    """A JSON array of ``size`` new heartbeats of one user (new event ids every time)."""
    events = [
        {**EVENT, "event_id": str(uuid.uuid4()), "user_id": f"u_{user:06d}",
         "position_s": 60.0 + 10 * i}
        for i in range(size)
    ]  # fmt: skip
    return json.dumps(events).encode()


def client(port: int, batch: int, until: float, user: int, out: list) -> None:
    """Closed loop: send, wait for the answer, send the next; latency of each request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
    latencies, accepted = [], 0
    while time.monotonic() < until:
        body = batch_body(batch, user)
        started = time.perf_counter()
        conn.request("POST", "/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload[:200]!r}")
        accepted += json.loads(payload)["accepted"]
    conn.close()
    out.append((accepted, latencies))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (the uvicorn workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


def one_run(port: int, server_pid: int, clients: int, batch: int, seconds: float) -> dict:
    until = time.monotonic() + seconds
    out: list = []
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    threads = [
        threading.Thread(target=client, args=(port, batch, until, i, out)) for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu_before
    events = sum(a for a, _ in out)
    latencies = sorted(x for _, lat in out for x in lat)
    return {
        "events": events,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "events_per_s": round(events / wall),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "server_cpu_s": round(cpu, 2),
        "events_per_server_cpu_s": round(events / cpu) if cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="ottp-bench-collector-"))
    proc, port = start_server(data_dir, args.workers)
    try:
        one_run(port, proc.pid, args.clients, args.batch, 2.0)  # warm-up
        runs = [
            one_run(port, proc.pid, args.clients, args.batch, args.seconds)
            for _ in range(args.runs)
        ]
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    median = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
    result = {
        "clients": args.clients,
        "batch": args.batch,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "runs": runs,
        "median_events_per_s": median["events_per_s"],
        "median_run": median,
        "events_per_s_spread": [
            min(r["events_per_s"] for r in runs),
            max(r["events_per_s"] for r in runs),
        ],  # fmt: skip
        "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench-results" / "bench_collector.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
