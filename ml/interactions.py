"""Training interactions: one row per user × title, built in DuckDB from the marts.

Every (user, title) pair with a play or an expressed interest gets one evidence
class and a signed value:

- a valid play counts 1, plus the share watched, completion, repeat viewing, a like,
  a good rating and a watchlist add;
- early abandonment (left before ``abandon_pct`` without a like) is weak evidence:
  a small positive value, so low confidence;
- a dislike (or a rating of 1-2 stars) is a negative: implicit's ALS reads a
  negative value as "preference 0, with confidence 1 + alpha * |value|";
- every value decays with the age of the pair's latest interaction (half-life).

docs/recommendations.md compares, on held-out days, this choice with dropping the
weak and negative evidence, with abandonment as a negative, without the decay, and
with every play counted alike (the `VARIANTS`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Weights:
    """How plays and interests become a value; one named variant.

    abandoned and disliked: the value of that evidence (negative: a negative for
    ALS, small positive: weak evidence), or None to leave the pair out of training.
    """

    name: str = "graded"
    played: float = 1.0  # any valid play
    watched: float = 0.5  # × the furthest share watched (0..1)
    completed: float = 0.5
    repeat: float = 0.5  # × ln(valid plays of the title)
    liked: float = 1.0
    good_rating: float = 0.5  # × (stars - 3) / 2, for 4 and 5 stars
    watchlist: float = 0.3
    disliked: float | None = -1.0  # a dislike, or 1-2 stars
    abandoned: float | None = 0.3  # started, left before abandon_pct, not liked
    abandon_pct: float = 0.25
    half_life_days: float | None = 30.0
    binary: bool = False  # every valid play counts 1, nothing else counts

    def to_dict(self) -> dict:
        return asdict(self)


GRADED = Weights()
POSITIVE_ONLY = replace(GRADED, name="positive_only", disliked=None, abandoned=None)
ABANDON_NEGATIVE = replace(GRADED, name="abandon_negative", abandoned=-0.5)
DISLIKE_DROPPED = replace(GRADED, name="dislike_dropped", disliked=None)
NO_DECAY = replace(GRADED, name="no_decay", half_life_days=None)
PLAYS_ONLY = Weights(name="plays_only", binary=True, half_life_days=None)
VARIANTS: dict[str, Weights] = {
    w.name: w
    for w in (GRADED, POSITIVE_ONLY, ABANDON_NEGATIVE, DISLIKE_DROPPED, NO_DECAY, PLAYS_ONLY)
}

INTERACTIONS_SQL = """
with

plays as (

    select
        user_id,
        title_id,
        count(*) filter (where is_valid_play) as valid_play_count,
        max(coalesce(furthest_pct, 0)) as max_pct,
        bool_or(coalesce(is_complete, false)) as is_complete,
        max(started_at) as last_played_at
    from marts.plays
    where started_at >= $start_at and started_at < $end_at
    group by user_id, title_id

),

-- interests are the latest state per pair; only what was known before end_at counts
interests as (

    select
        user_id,
        title_id,
        coalesce(reacted_at < $end_at and is_liked, false) as is_liked,
        coalesce(reacted_at < $end_at and is_disliked, false) as is_disliked,
        case when rated_at < $end_at then rating end as rating,
        coalesce(added_to_watchlist_at < $end_at, false) as is_on_watchlist,
        greatest(
            case when reacted_at < $end_at then reacted_at end,
            case when rated_at < $end_at then rated_at end,
            case when added_to_watchlist_at < $end_at then added_to_watchlist_at end
        ) as last_interest_at
    from marts.user_title_interests

),

joined as (

    select
        coalesce(plays.user_id, interests.user_id) as user_id,
        coalesce(plays.title_id, interests.title_id) as title_id,
        coalesce(plays.valid_play_count, 0) as valid_play_count,
        coalesce(plays.max_pct, 0) as max_pct,
        coalesce(plays.is_complete, false) as is_complete,
        coalesce(interests.is_liked, false) as is_liked,
        coalesce(interests.is_disliked, false) as is_disliked,
        interests.rating,
        coalesce(interests.is_on_watchlist, false) as is_on_watchlist,
        plays.user_id is not null as has_played,
        greatest(plays.last_played_at, interests.last_interest_at) as last_interaction_at
    from plays
    full outer join interests
        on plays.user_id = interests.user_id and plays.title_id = interests.title_id
    where
        plays.user_id is not null
        or (
            interests.last_interest_at >= $start_at
            and interests.last_interest_at < $end_at
        )

),

classified as (

    select
        *,
        case
            when is_disliked or rating <= 2 then 'disliked'
            when is_liked then 'liked'
            when is_complete then 'completed'
            when valid_play_count > 0 and max_pct >= $abandon_pct then 'watched'
            when rating >= 4 then 'rated'
            when has_played then 'abandoned'
            when is_on_watchlist then 'watchlisted'
            else 'other'
        end as evidence,
        power(
            0.5,
            greatest(date_diff('second', last_interaction_at, $end_at), 0)
            / 86400.0 / $half_life_days
        ) as recency_weight,
        $w_played * cast(valid_play_count > 0 as double)
        + $w_watched * least(max_pct, 1.0)
        + $w_completed * cast(is_complete as double)
        + $w_repeat * ln(greatest(valid_play_count, 1))
        + $w_liked * cast(is_liked as double)
        + $w_good_rating * greatest(coalesce(rating, 3) - 3, 0) / 2.0
        + $w_watchlist * cast(is_on_watchlist as double) as strength
    from joined

),

valued as (

    select
        *,
        case
            when $binary then case when valid_play_count > 0 then 1.0 end
            when evidence = 'disliked' then $w_disliked
            when evidence = 'abandoned' then $w_abandoned
            when evidence = 'other' then null
            else strength
        end as base_value
    from classified

)

select
    user_id,
    title_id,
    evidence,
    cast(base_value * recency_weight as float) as value,
    cast(recency_weight as float) as recency_weight,
    valid_play_count,
    cast(max_pct as float) as max_pct,
    is_complete,
    is_liked,
    is_disliked or coalesce(rating <= 2, false) as is_disliked,
    rating,
    is_on_watchlist,
    valid_play_count > 0 as has_watched,
    valid_play_count > 0 or is_complete or is_disliked or coalesce(rating <= 2, false)
        as is_excluded,
    last_interaction_at
from valued
order by user_id, title_id
"""

HELDOUT_SQL = """
with

plays as (

    select user_id, title_id
    from marts.plays
    where
        started_at >= $start_at and started_at < $end_at
        and is_valid_play
    group by user_id, title_id
    having max(coalesce(furthest_pct, 0)) >= $abandon_pct or bool_or(is_complete)

),

disliked as (

    select user_id, title_id
    from marts.user_title_interests
    where (is_disliked and reacted_at < $end_at) or (rating <= 2 and rated_at < $end_at)

)

select plays.user_id, plays.title_id
from plays
anti join disliked
    on plays.user_id = disliked.user_id and plays.title_id = disliked.title_id
order by 1, 2
"""


def _params(weights: Weights, start_at: datetime | None, end_at: datetime) -> dict:
    return {
        "start_at": start_at or EPOCH,
        "end_at": end_at,
        "abandon_pct": weights.abandon_pct,
        "half_life_days": weights.half_life_days or 1e9,
        "w_watched": weights.watched,
        "w_completed": weights.completed,
        "w_repeat": weights.repeat,
        "w_liked": weights.liked,
        "w_good_rating": weights.good_rating,
        "w_watchlist": weights.watchlist,
        "w_played": weights.played,
        "w_disliked": weights.disliked,
        "w_abandoned": weights.abandoned,
        "binary": weights.binary,
    }


# The same statements in Spark SQL: named parameters, and Spark's spelling of
# the two DuckDB-only constructs they use.
_SPARK_SPELLING = {
    "date_diff('second', last_interaction_at, $end_at)": (
        "timestampdiff(SECOND, last_interaction_at, $end_at)"
    ),
    "anti join disliked": "left anti join disliked",
}


def spark_sql(sql: str) -> str:
    """A statement of this module in Spark SQL ($name parameters become :name)."""
    for duckdb_spelling, spark_spelling in _SPARK_SPELLING.items():
        sql = sql.replace(duckdb_spelling, spark_spelling)
    return re.sub(r"\$([a-z_]+)", r":\1", sql)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pa.Table:
    """Run on the engine that holds the marts: DuckDB, or Spark for a Spark-backed con."""
    from ml.warehouse import spark_session_of

    spark = spark_session_of(con)
    if spark is None:
        return con.sql(sql, params=params).to_arrow_table()
    # Spark reads naive datetimes in the Python process's zone: pass UTC instants.
    args = {
        k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
        for k, v in params.items()
    }
    table = spark.sql(spark_sql(sql), args=args).toArrow()
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp(f.type.unit)))
    return table


def interactions(
    con: duckdb.DuckDBPyConnection,
    end_at: datetime,
    start_at: datetime | None = None,
    weights: Weights = GRADED,
) -> pa.Table:
    """One row per user × title with evidence in [start_at, end_at), and its value.

    On a Spark-backed connection (ml.warehouse.connect_spark) Spark computes it.
    """
    return _run(con, INTERACTIONS_SQL, _params(weights, start_at, end_at))


def heldout(
    con: duckdb.DuckDBPyConnection,
    start_at: datetime,
    end_at: datetime,
    abandon_pct: float = GRADED.abandon_pct,
) -> pa.Table:
    """Relevant pairs of a held-out window: watched past abandon_pct, not disliked."""
    params = {"start_at": start_at, "end_at": end_at, "abandon_pct": abandon_pct}
    return _run(con, HELDOUT_SQL, params)


def catalog(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The titles the marts know, sorted by id (the order of the matrices' columns)."""
    return con.sql(
        """
        select
            titles.title_id,
            titles.title_name,
            titles.category,
            coalesce(titles.category_name, titles.category) as category_name,
            coalesce(titles.keywords, '') as keywords,
            titles.series_id,
            titles.episode_order,
            titles.title_kind,
            coalesce(titles.is_available, false) as is_available,
            titles.available_from,
            coalesce(engagement.viewer_count, 0) as viewer_count
        from marts.titles as titles
        left join marts.title_engagement as engagement
            on titles.title_id = engagement.title_id
        order by titles.title_id
        """
    ).to_arrow_table()


# --------------------------------------------------------------------------- matrices


@dataclass
class Interactions:
    """A training matrix and its index: rows are users, columns are titles."""

    user_ids: np.ndarray
    title_ids: np.ndarray
    matrix: sp.csr_matrix  # signed float32 values (negatives: weak or negative evidence)
    exclude: sp.csr_matrix  # 1 where a title must not be recommended (watched, disliked)

    @property
    def positives(self) -> sp.csr_matrix:
        """The positive part, for models that read every stored value as a like."""
        m = self.matrix.copy()
        m.data[m.data < 0] = 0
        m.eliminate_zeros()
        return m

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id, -1 for users the matrix does not know."""
        return lookup(self.user_ids, user_ids)


def lookup(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions of values in a sorted index; -1 where absent (vectorised)."""
    values = np.asarray(values)
    if len(index) == 0 or len(values) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.searchsorted(index, values)
    pos = np.clip(pos, 0, len(index) - 1)
    return np.where(index[pos] == values, pos, -1).astype(np.int64)


def _strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def to_matrix(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
) -> sp.csr_matrix:
    keep = (rows >= 0) & (cols >= 0) & np.isfinite(values) & (values != 0)
    m = sp.csr_matrix(
        (values[keep].astype(np.float32), (rows[keep], cols[keep])), shape=shape, dtype=np.float32
    )
    m.sum_duplicates()
    m.sort_indices()
    return m


def build(
    table: pa.Table,
    title_ids: np.ndarray,
    user_ids: np.ndarray | None = None,
) -> Interactions:
    """Index an interactions table: users sorted (or given), titles in catalog order.

    No Python runs per row: ids are mapped with a sorted search.
    """
    users = _strings(table["user_id"])
    titles = _strings(table["title_id"])
    if user_ids is None:
        user_ids = np.unique(users) if len(users) else np.array([], dtype=object)
    title_ids = np.asarray(title_ids, dtype=object)
    r = lookup(user_ids, users)
    c = lookup(title_ids, titles)
    shape = (len(user_ids), len(title_ids))
    value = table["value"].to_numpy(zero_copy_only=False)
    value = np.where(np.isnan(value.astype(np.float64)), 0, value).astype(np.float32)
    excluded = table["is_excluded"].to_numpy(zero_copy_only=False).astype(bool)
    return Interactions(
        user_ids=user_ids,
        title_ids=title_ids,
        matrix=to_matrix(r, c, value, shape),
        exclude=to_matrix(r, c, excluded.astype(np.float32), shape),
    )


def relevance(table: pa.Table, train: Interactions) -> sp.csr_matrix:
    """Held-out pairs as a 0/1 matrix on the training index, minus what was already seen.

    Users or titles the training matrix does not know are left out (cold start is
    evaluated separately); so are pairs the user had already watched or disliked.
    """
    r = train.user_rows(_strings(table["user_id"]))
    c = lookup(train.title_ids, _strings(table["title_id"]))
    m = to_matrix(r, c, np.ones(len(r), dtype=np.float32), train.matrix.shape)
    m.data[:] = 1
    seen = train.exclude.multiply(m) > 0
    m = m - m.multiply(seen)
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    return m
