"""Churn risk: a calibrated probability per active subscriber, from engagement.

Label: at a cut-off T, an active subscriber churns when they cancel, or stop
watching (no valid play), within the next ``horizon_days``. Features are computed
from what was known at T only (SQL over the marts).

Protocol: fit at T1 = as_of - 2H (labels in (T1, T1 + H]), evaluate at T2 = as_of - H
(labels in (T2, as_of]), a later period the model never saw; AUC against the
rule-based baseline (days since the last play, the rule behind the at-risk
lifecycle stage), Brier score and a reliability table for calibration. The model
scored at as_of is refit on both labelled periods. Logistic regression on
standardised log features: simple, explainable (each user's main driver is the
feature adding most to their score) and calibrated by its loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from ml.warehouse import scalar

FEATURES = (
    "days_since_last_play",
    "plays_7d",
    "plays_28d",
    "watch_hours_7d",
    "watch_hours_28d",
    "active_days_28d",
    "titles_28d",
    "completion_rate_28d",
    "sessions_28d",
    "likes_28d",
    "dislikes_28d",
    "tenure_days",
    "recent_trend",
    "is_premium",
    "is_basic",
)

FEATURES_SQL = """
with

subscribers as (

    select
        user_id,
        plan_name,
        -- users without a signup in the data subscribed before it started
        coalesce(signed_up_at, $data_start) as joined_at
    from marts.users
    where
        -- 'none': no subscription event in the data, yet watching (subscribed before it)
        (subscription_status <> 'none' or first_active_at < $cutoff)
        and coalesce(signed_up_at, $data_start) <= $cutoff
        and (deletion_requested_at is null or deletion_requested_at > $cutoff)
        and not coalesce(
            last_cancelled_at <= $cutoff
            and (last_reactivated_at is null or last_reactivated_at < last_cancelled_at),
            false
        )

),

plays as (

    select
        user_id,
        max(started_at) as last_play_at,
        count(*) filter (where started_at >= $cutoff - interval 7 day) as plays_7d,
        count(*) as plays_28d,
        sum(played_s) filter (where started_at >= $cutoff - interval 7 day) / 3600.0
            as watch_hours_7d,
        sum(played_s) / 3600.0 as watch_hours_28d,
        count(distinct cast(started_at as date)) as active_days_28d,
        count(distinct title_id) as titles_28d,
        avg(cast(is_complete as double)) as completion_rate_28d
    from marts.plays
    where is_valid_play and started_at < $cutoff and started_at >= $cutoff - $window
    group by user_id

),

last_play as (

    select user_id, max(started_at) as last_play_at
    from marts.plays
    where is_valid_play and started_at < $cutoff
    group by user_id

),

sessions as (

    select user_id, count(*) as sessions_28d
    from marts.sessions
    where started_at < $cutoff and started_at >= $cutoff - $window and user_id is not null
    group by user_id

),

reactions as (

    select
        user_id,
        count(*) filter (where is_liked) as likes_28d,
        count(*) filter (where is_disliked) as dislikes_28d
    from marts.user_title_interests
    where reacted_at < $cutoff and reacted_at >= $cutoff - $window
    group by user_id

),

future as (

    select user_id, count(*) as plays_next
    from marts.plays
    where is_valid_play and started_at >= $cutoff and started_at < $label_end
    group by user_id

),

cancels as (

    select user_id
    from marts.users
    where last_cancelled_at >= $cutoff and last_cancelled_at < $label_end

)

select
    subscribers.user_id,
    cast(least(
        coalesce(
            date_diff('second', last_play.last_play_at, $cutoff),
            date_diff('second', subscribers.joined_at, $cutoff)
        ) / 86400.0,
        $window_days + 1
    ) as double) as days_since_last_play,
    cast(coalesce(plays.plays_7d, 0) as double) as plays_7d,
    cast(coalesce(plays.plays_28d, 0) as double) as plays_28d,
    coalesce(plays.watch_hours_7d, 0) as watch_hours_7d,
    coalesce(plays.watch_hours_28d, 0) as watch_hours_28d,
    cast(coalesce(plays.active_days_28d, 0) as double) as active_days_28d,
    cast(coalesce(plays.titles_28d, 0) as double) as titles_28d,
    coalesce(plays.completion_rate_28d, 0) as completion_rate_28d,
    cast(coalesce(sessions.sessions_28d, 0) as double) as sessions_28d,
    cast(coalesce(reactions.likes_28d, 0) as double) as likes_28d,
    cast(coalesce(reactions.dislikes_28d, 0) as double) as dislikes_28d,
    cast(greatest(date_diff('second', subscribers.joined_at, $cutoff), 0) / 86400.0 as double)
        as tenure_days,
    cast(coalesce(plays.plays_7d, 0) as double)
        / (coalesce(plays.plays_28d, 0) * 7.0 / $window_days + 1.0) as recent_trend,
    cast(coalesce(subscribers.plan_name = 'premium', false) as double) as is_premium,
    cast(coalesce(subscribers.plan_name = 'basic', false) as double) as is_basic,
    cancels.user_id is not null or future.user_id is null as churned,
    coalesce(users.is_contactable, false) as is_contactable,
    lifecycle.lifecycle_stage
from subscribers
inner join marts.users as users on subscribers.user_id = users.user_id
left join marts.user_lifecycle as lifecycle on subscribers.user_id = lifecycle.user_id
left join plays on subscribers.user_id = plays.user_id
left join last_play on subscribers.user_id = last_play.user_id
left join sessions on subscribers.user_id = sessions.user_id
left join reactions on subscribers.user_id = reactions.user_id
left join future on subscribers.user_id = future.user_id
left join cancels on subscribers.user_id = cancels.user_id
order by subscribers.user_id
"""


@dataclass
class Snapshot:
    cutoff: datetime
    user_ids: np.ndarray
    x: np.ndarray
    churned: np.ndarray  # only meaningful when the label window is observed
    crm: pa.Table  # is_contactable, lifecycle_stage (now, for the CRM)


def snapshot(
    con: duckdb.DuckDBPyConnection,
    cutoff: datetime,
    horizon_days: float,
    window_days: float,
    data_start: datetime,
) -> Snapshot:
    t = con.sql(
        FEATURES_SQL,
        params={
            "cutoff": cutoff,
            "data_start": data_start,
            "label_end": cutoff + timedelta(days=horizon_days),
            "window": timedelta(days=window_days),
            "window_days": float(window_days),
        },
    ).to_arrow_table()
    x = (
        np.column_stack([t[f].to_numpy(zero_copy_only=False).astype(np.float64) for f in FEATURES])
        if t.num_rows
        else np.zeros((0, len(FEATURES)))
    )
    return Snapshot(
        cutoff=cutoff,
        user_ids=np.asarray(t["user_id"].to_numpy(zero_copy_only=False), dtype=object),
        x=x,
        churned=np.asarray(t["churned"].to_numpy(zero_copy_only=False), dtype=bool),
        crm=t.select(["is_contactable", "lifecycle_stage"]),
    )


def _transform(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(x, 0))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[dict]:
    """Predicted against observed churn per probability quantile bin."""
    if len(p) == 0:
        return []
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for b in np.unique(idx):
        m = idx == b
        out.append(
            {
                "bin": int(b),
                "users": int(m.sum()),
                "predicted": round(float(p[m].mean()), 4),
                "observed": round(float(y[m].mean()), 4),
            }
        )
    return out


@dataclass
class ChurnResult:
    scores: pa.Table
    evaluation: dict
    notes: list[str] = field(default_factory=list)


def _rule_probability(days: np.ndarray, churned_days: float) -> np.ndarray:
    return np.clip(days / churned_days, 0.0, 1.0)


def _score(model, x: np.ndarray, window: float, evaluation: dict):
    """Risk per subscriber and its main driver: the fitted model's, or the rule's when
    there is no model; the model's coefficients go into ``evaluation``."""
    days = x[:, FEATURES.index("days_since_last_play")] if len(x) else np.zeros(0)
    if model is not None and len(x):
        z = _transform(x)
        risk = model.predict_proba(z)[:, 1]
        scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
        standardised = scaler.transform(z)
        contrib = standardised * lr.coef_[0]
        top = np.argmax(contrib, axis=1)
        side = np.where(standardised[np.arange(len(top)), top] < 0, " (low)", " (high)")
        driver = np.char.add(np.asarray(FEATURES, dtype=str)[top], side)
        evaluation["coefficients"] = {
            f: round(float(c), 4) for f, c in zip(FEATURES, lr.coef_[0], strict=True)
        }
        method = "logistic_regression"
    else:
        risk = _rule_probability(days, max(window, 1.0))
        driver = np.full(len(days), "days_since_last_play (high)", dtype=object)
        method = "rule_days_since_last_play"
    return days, risk, driver, method


def churn_risk(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: float = 14.0,
    window_days: float = 28.0,
    min_rows: int = 30,
) -> ChurnResult:
    """Fit, evaluate on a later period, and score the active subscribers at as_of."""
    # scikit-learn loads slowly: imported when scoring, not when definitions load
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    first = scalar(con, "select min(started_at) from marts.plays") or as_of
    span = max((as_of - first).total_seconds() / 86400.0, 0.0)
    notes = []
    horizon = min(horizon_days, span / 4.0)
    window = min(window_days, max(span - 2 * horizon, 1.0))
    if horizon < horizon_days or window < window_days:
        notes.append(
            f"history of {span:.1f} days: horizon {horizon:.1f} days, "
            f"feature window {window:.1f} days"
        )
    now = snapshot(con, as_of, horizon, window, first)
    evaluation: dict = {
        "horizon_days": round(horizon, 2),
        "window_days": round(window, 2),
        "features": list(FEATURES),
    }
    model = None
    if horizon >= 1.0:
        t1 = snapshot(con, as_of - timedelta(days=2 * horizon), horizon, window, first)
        t2 = snapshot(con, as_of - timedelta(days=horizon), horizon, window, first)
        usable = (
            len(t1.churned) >= min_rows
            and len(np.unique(t1.churned)) == 2
            and len(t2.churned) >= min_rows
            and len(np.unique(t2.churned)) == 2
        )
        if usable:
            pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
            pipe.fit(_transform(t1.x), t1.churned)
            p2 = pipe.predict_proba(_transform(t2.x))[:, 1]
            rule = t2.x[:, FEATURES.index("days_since_last_play")]
            evaluation.update(
                {
                    "fit_period": f"{t1.cutoff:%Y-%m-%d}..{t2.cutoff:%Y-%m-%d}",
                    "evaluation_period": f"{t2.cutoff:%Y-%m-%d}..{as_of:%Y-%m-%d}",
                    "fit_users": int(len(t1.churned)),
                    "evaluation_users": int(len(t2.churned)),
                    "churn_rate_fit": round(float(t1.churned.mean()), 4),
                    "churn_rate_evaluation": round(float(t2.churned.mean()), 4),
                    "auc_model": round(float(roc_auc_score(t2.churned, p2)), 4),
                    "auc_rule": round(float(roc_auc_score(t2.churned, rule)), 4),
                    "brier_model": round(float(brier_score_loss(t2.churned, p2)), 4),
                    "brier_base_rate": round(
                        float(brier_score_loss(t2.churned, np.full(len(p2), t1.churned.mean()))), 4
                    ),
                    "reliability": reliability(t2.churned.astype(float), p2),
                }
            )
            model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
            model.fit(_transform(np.vstack([t1.x, t2.x])), np.concatenate([t1.churned, t2.churned]))
        else:
            notes.append("too few labelled subscribers, or one class only: rule-based score")
    else:
        notes.append("history too short to observe churn: rule-based score")

    days, risk, driver, method = _score(model, now.x, window, evaluation)
    evaluation["method"] = method
    band = np.where(risk >= 0.5, "high", np.where(risk >= 0.25, "medium", "low"))
    x = now.x if len(now.x) else np.zeros((0, len(FEATURES)))
    scores = pa.table(
        {
            "user_id": pa.array(now.user_ids.astype(str)),
            "churn_risk": pa.array(risk.astype(np.float64)),
            "risk_band": pa.array(band.astype(str)),
            "main_driver": pa.array(driver.astype(str)),
            "days_since_last_play": pa.array(days.astype(np.float64)),
            "plays_28d": pa.array(x[:, FEATURES.index("plays_28d")]),
            "watch_hours_28d": pa.array(x[:, FEATURES.index("watch_hours_28d")]),
            "is_contactable": now.crm["is_contactable"],
            "lifecycle_stage": now.crm["lifecycle_stage"],
            "horizon_days": pa.array(np.full(len(risk), horizon)),
            "method": pa.array(np.full(len(risk), method, dtype=object).astype(str)),
            "scored_at": pa.array(np.full(len(risk), as_of, dtype="datetime64[us]")),
        }
    )
    return ChurnResult(scores, evaluation, notes)
