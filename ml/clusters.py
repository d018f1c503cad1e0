"""Taste clusters: users grouped by what they like, described for the CRM.

Users are clustered (k-means on L2-normalised vectors, so by direction of taste,
not by how much they watch) on their ALS factors when the promoted model has them,
else on their category shares. The number of clusters is chosen by silhouette
over a small range. Each cluster is described by the categories its members watch
more than everyone else (lift of the mean share of watch time) and by the titles
that suit it (its centroid scored against the item factors, else its most watched).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

SAMPLE_FOR_SILHOUETTE = 5000
# below this many users, k-means' OpenMP threads cost more than they bring
SINGLE_THREAD_USERS = 50_000
MIN_CLUSTER_USERS = 10


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def choose_k(x: np.ndarray, candidates: tuple[int, ...], seed: int) -> tuple[int, float, dict]:
    """The k with the best silhouette (on a sample); (k, its silhouette, every score)."""
    from sklearn.cluster import KMeans  # scikit-learn loads slowly: only when clustering
    from sklearn.metrics import silhouette_score

    n = len(x)
    rng = np.random.default_rng(seed)
    sample = x if n <= SAMPLE_FOR_SILHOUETTE else x[rng.choice(n, SAMPLE_FOR_SILHOUETTE, False)]
    scores = {}
    # at least MIN_CLUSTER_USERS per cluster on average, and at least two clusters
    allowed = [k for k in candidates if 2 <= k <= n // MIN_CLUSTER_USERS] or (
        [2] if n >= 2 * MIN_CLUSTER_USERS else []
    )
    for k in allowed:
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(sample)
        if len(np.unique(labels)) > 1:
            scores[k] = float(silhouette_score(sample, labels))
    if not scores:
        return 1, float("nan"), {}
    best = max(scores, key=scores.get)
    return best, scores[best], scores


def _by_size(
    labels: np.ndarray, centroids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster ids renumbered by size, largest first (ids are stable across runs)."""
    sizes = np.bincount(labels, minlength=k)
    relabel = np.empty(k, dtype=np.int64)
    relabel[np.argsort(-sizes, kind="stable")] = np.arange(k)
    labels = relabel[labels]
    centroids = centroids[np.argsort(-sizes, kind="stable")]
    return labels, centroids, np.bincount(labels, minlength=k)


def _best_titles(
    centroids: np.ndarray,
    labels: np.ndarray,
    k: int,
    title_scores: np.ndarray | None,
    user_title_counts,
    title_ok: np.ndarray | None,
    title_groups: np.ndarray | None,
    n_titles: int,
    top_titles: int,
) -> np.ndarray:
    """Per cluster, the indices of the titles that suit it best (one per series)."""
    ok = np.ones(n_titles, dtype=bool) if title_ok is None else title_ok
    if title_scores is not None:
        fit_scores = _normalise(centroids) @ _normalise(np.asarray(title_scores)).T
    else:
        counts = np.vstack(
            [np.asarray(user_title_counts[labels == c].sum(axis=0)).ravel() for c in range(k)]
        ).astype(np.float64)
        fit_scores = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1) * np.log1p(counts)
    fit_scores = np.where(ok[None, :], fit_scores, -np.inf)
    title_order = np.argsort(-fit_scores, axis=1, kind="stable")
    if title_groups is not None:
        # one title per series: its best-suited episode stands for it
        groups = np.asarray(title_groups, dtype=object)[title_order]
        first = np.zeros(title_order.shape, dtype=bool)
        for c in range(k):  # per cluster (a handful)
            _, idx = np.unique(groups[c], return_index=True)
            first[c, idx] = True
        title_order = np.where(first, title_order, -1)
        title_order = np.vstack([row[row >= 0] for row in title_order])
    return title_order[:, :top_titles]


def _numbered_repeats(names: list[str]) -> list[str]:
    """The same two leading categories can describe two clusters: number the repeats."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(f"{name} ({seen[name]})" if seen[name] > 1 else name)
    return out


def taste_clusters(
    user_ids: np.ndarray,
    features: np.ndarray,
    category_shares: np.ndarray,
    categories: np.ndarray,
    title_ids: np.ndarray,
    title_names: np.ndarray,
    title_scores: np.ndarray | None,
    user_title_counts=None,
    k_candidates: tuple[int, ...] = (4, 6, 8, 10, 12),
    top_categories: int = 3,
    top_titles: int = 10,
    title_ok: np.ndarray | None = None,
    title_groups: np.ndarray | None = None,
    seed: int = 42,
) -> tuple[pa.Table, pa.Table, dict]:
    """Cluster users and describe the clusters.

    features: one row per user (factors or category shares); category_shares: users
    x categories, each user's share of watch time; title_scores: item factors
    (titles x factors) to score centroids with, or None to rank titles by how many
    members watched them (user_title_counts: users x titles sparse, positives);
    title_groups: a series key per title, so a series is listed once.
    Returns (ml.taste_clusters, ml.user_taste_clusters, info).
    """
    x = _normalise(np.asarray(features, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("no user to cluster")
    with threadpool_limits(1 if n < SINGLE_THREAD_USERS else None):
        k, silhouette, scores = choose_k(x, k_candidates, seed)
        if k == 1:
            labels = np.zeros(n, dtype=np.int64)
            centroids = x.mean(axis=0, keepdims=True)
        else:
            from sklearn.cluster import KMeans

            km = KMeans(k, n_init=5, random_state=seed).fit(x)
            labels, centroids = km.labels_, km.cluster_centers_
    labels, centroids, sizes = _by_size(labels, centroids, k)

    shares = np.asarray(category_shares, dtype=np.float64)
    overall = shares.mean(axis=0)
    per_cluster = np.vstack([shares[labels == c].mean(axis=0) for c in range(k)])
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(overall > 0, per_cluster / overall, 0.0)
    # categories the cluster watches most, ranked by share x lift (typical and distinctive)
    rank_key = per_cluster * np.sqrt(np.maximum(lift, 0))
    cat_order = np.argsort(-rank_key, axis=1, kind="stable")[:, :top_categories]

    title_order = _best_titles(
        centroids,
        labels,
        k,
        title_scores,
        user_title_counts,
        title_ok,
        title_groups,
        len(title_ids),
        top_titles,
    )

    names, tops, top_shares, top_lifts, t_ids, t_names = [], [], [], [], [], []
    for c in range(k):  # one iteration per cluster (a handful), not per user
        cats = categories[cat_order[c]]
        names.append(" & ".join(str(v).replace("_", " ").title() for v in cats[:2]))
        tops.append([str(v) for v in cats])
        top_shares.append([round(float(v), 4) for v in per_cluster[c, cat_order[c]]])
        top_lifts.append([round(float(v), 3) for v in lift[c, cat_order[c]]])
        t_ids.append([str(v) for v in title_ids[title_order[c]]])
        t_names.append([str(v) for v in title_names[title_order[c]]])
    names = _numbered_repeats(names)
    names_arr = np.asarray(names, dtype=object)
    affinity = np.einsum("ij,ij->i", x, _normalise(centroids)[labels])

    clusters = pa.table(
        {
            "cluster_id": pa.array(np.arange(k, dtype=np.int32)),
            "cluster_name": pa.array(names),
            "user_count": pa.array(sizes.astype(np.int64)),
            "share_of_users": pa.array((sizes / n).astype(np.float64)),
            "top_categories": pa.array(tops, type=pa.list_(pa.string())),
            "top_category_shares": pa.array(top_shares, type=pa.list_(pa.float64())),
            "top_category_lifts": pa.array(top_lifts, type=pa.list_(pa.float64())),
            "top_title_ids": pa.array(t_ids, type=pa.list_(pa.string())),
            "top_title_names": pa.array(t_names, type=pa.list_(pa.string())),
        }
    )
    users = pa.table(
        {
            "user_id": pa.array(np.asarray(user_ids).astype(str)),
            "cluster_id": pa.array(labels.astype(np.int32)),
            "cluster_name": pa.array(names_arr[labels].astype(str)),
            "affinity": pa.array(affinity.astype(np.float32)),
        }
    )
    info = {"k": int(k), "silhouette": silhouette, "silhouette_by_k": scores}
    return clusters, users, info
