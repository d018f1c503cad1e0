"""Run configuration of the ML assets: the evaluation grid and the promotion gate's margins."""

import dagster as dg

from ml import evaluation as ev


class EvaluationConfig(dg.Config):
    """Held-out windows (shortened when the history is short), the ALS and EASE^R tuning
    grids (an empty ``ease_l2`` leaves EASE^R out)."""

    test_days: int = 14
    validation_days: int = 14
    factors: list[int] = list(ev.ALS_GRID["factors"])
    regularization: list[float] = list(ev.ALS_GRID["regularization"])
    alpha: list[float] = list(ev.ALS_GRID["alpha"])
    iterations: list[int] = list(ev.ALS_GRID["iterations"])
    ease_l2: list[float] = list(ev.EASE_GRID["l2"])
    # training-data variants compared with the chosen weights (the evidence in the docs)
    weights_variants: list[str] = [w.name for w in ev.EvalConfig().variants]


class GateConfig(dg.Config):
    """The promotion gate's margins on NDCG@10 (relative)."""

    min_lift_over_baseline: float = 0.10
    max_drop_vs_promoted: float = 0.05
