"""Per-call latency of LiveRecommender.recommend on synthetic arrays of a given size.

    .venv/bin/python -m ottp.realtime.rerank_latency [--titles 20000] [--users 100000]

Builds a serving model from random arrays (ALS item factors, 30 history titles and
100 batch candidates per user, 50 transitions per title, five-title sessions,
popularity-skewed title choice) and times ``recommend(signals, 20)`` for a known
user with a five-title session (a like, a title in progress, an ignored title), an
anonymous device with a session, and a cold user; one BLAS thread, one process.
Prints the median and the 99th percentile per case. The endpoint's own latency
under load is measured on the serving side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ml.models import ModelSpec, TrainedModel
from ottp.realtime.rerank import Interaction, LiveRecommender, SessionSignals
from ottp.realtime.rerank_model import ServingModel, build_serving_model, top_per_row
from ottp.realtime.session_knn import build_session_index


def synthetic_model(n_titles: int, n_users: int, n_sessions: int, seed: int = 0) -> ServingModel:
    rng = np.random.default_rng(seed)
    pop = (rng.zipf(1.2, n_titles) % 5000 + 1).astype(np.float32)
    p = pop / pop.sum()
    spec = ModelSpec("als", {"factors": 64, "regularization": 5.0, "alpha": 2.0})
    factors = rng.normal(0, 0.1, (n_titles, 64)).astype(np.float32)
    model = TrainedModel(spec=spec, n_items=n_titles, popularity=pop, item_factors=factors)

    def rows(n: int, per: int) -> sp.csr_matrix:
        r = np.repeat(np.arange(n), per)
        c = rng.choice(n_titles, n * per, p=p)
        m = sp.csr_matrix(
            (rng.random(len(r)).astype(np.float32) + 0.1, (r, c)), shape=(n, n_titles)
        )
        m.sum_duplicates()
        return m

    sessions = np.repeat(np.arange(n_sessions), 5)
    at = np.repeat(rng.uniform(0, 30 * 86400, n_sessions), 5)
    return build_serving_model(
        "synthetic",
        model,
        np.array([f"t{i}" for i in range(n_titles)], dtype=object),
        np.array([f"u{i:07d}" for i in range(n_users)], dtype=object),
        rows(n_users, 30),
        rows(n_users, 100),
        top_per_row(rows(n_titles, 60), 50),
        build_session_index(sessions, rng.choice(n_titles, len(sessions), p=p), at, n_titles),
        pop / pop.max(),
        next_episode=np.r_[np.arange(1, n_titles), -1],
    )


def signals(kind: str, model: ServingModel, rng: np.random.Generator) -> SessionSignals:
    seq = tuple(Interaction(str(model.title_ids[i]), "play") for i in rng.choice(model.n_titles, 5))
    if kind == "anonymous":
        return SessionSignals(interactions=seq)
    user = str(model.user_ids[rng.integers(len(model.user_ids))])
    if kind == "cold":
        return SessionSignals(user_id=f"new-{user}")
    return SessionSignals(
        user_id=user,
        interactions=seq,
        liked={seq[0].title_id},
        progress={seq[1].title_id: 0.3},
        impressions={seq[2].title_id: 3},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--titles", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=1000)
    a = parser.parse_args(argv)
    started = time.perf_counter()
    model = synthetic_model(a.titles, a.users, a.sessions)
    rec = LiveRecommender(model)
    print(f"built in {time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(1)
    with threadpool_limits(1):
        for kind in ("known", "anonymous", "cold"):
            batch = [signals(kind, model, rng) for _ in range(a.calls)]
            for s in batch[:50]:  # warm-up
                rec.recommend(s, 20)
            ms = []
            for s in batch:
                t = time.perf_counter()
                rec.recommend(s, 20)
                ms.append((time.perf_counter() - t) * 1000)
            print(f"{kind:9s} median {np.median(ms):.2f} ms  p99 {np.percentile(ms, 99):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
