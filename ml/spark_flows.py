"""The recommender on a Spark warehouse: the steps the Dagster ``ml`` assets run.

Spark computes the training interactions from its marts (ml.interactions);
the rest of the recommender reads a Spark-backed connection (ml.warehouse.
connect_spark) and every table it writes lands in Spark's ``ml`` schema,
where the CRM export models read it.

    python -m ml.spark_flows [--factors 32] [--iterations 10]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ml import churn, flows, gate
from ml import evaluation as ev
from ml import interactions as ia
from ml import warehouse as wh


def run(
    spark,
    data_dir: Path,
    config: ev.EvalConfig,
    policy: gate.GatePolicy | None = None,
) -> dict[str, int]:
    """Train, gate and write recommendations, similar titles, clusters and churn risk."""
    reg = flows.registry(data_dir)
    counts: dict[str, int] = {}
    with wh.spark_warehouse(spark) as con:
        table, _ = flows.training_interactions(con)
        counts |= wh.write_tables(con, {"training_interactions": table})
        report = flows.evaluate(con, reg, config)
        counts |= wh.write_tables(con, {"model_evaluation": report.rows()})
        training = flows.train_and_gate(con, reg, policy)
        if training.promoted is None:
            raise RuntimeError(f"no model promoted: {training.decision.to_dict()}")
        table, _ = flows.recommendations(con, reg)
        counts |= wh.write_tables(con, {"recommendations": table})
        table, _ = flows.similar_titles(con, reg)
        counts |= wh.write_tables(con, {"similar_titles": table})
        clusters, members, _ = flows.taste_clusters(con, reg)
        counts |= wh.write_tables(con, {"taste_clusters": clusters, "user_taste_clusters": members})
        result = churn.churn_risk(con, wh.as_of(con))
        counts |= wh.write_tables(con, {"churn_risk": result.scores})
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json

    from ottp.config import settings
    from ottp.spark import session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[32])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--weights-variant", nargs="*", default=["positive_only"])
    parser.add_argument(
        "--min-lift-over-baseline", type=float, default=gate.GatePolicy().min_lift_over_baseline
    )
    args = parser.parse_args(argv)
    axes = {
        "factors": args.factors,
        "regularization": [5.0],
        "alpha": [1.0, 4.0],
        "iterations": [args.iterations],
    }
    config = ev.EvalConfig(
        tuning=tuple(ev.grid("als", axes)),
        variants=tuple(ia.VARIANTS[name] for name in args.weights_variant),
    )
    policy = gate.GatePolicy(min_lift_over_baseline=args.min_lift_over_baseline)
    s = settings()
    counts = run(session("ottp-recommender", s), s.data_dir, config, policy)
    print(json.dumps(counts, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
