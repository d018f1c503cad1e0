"""Automation policies for the whole graph, applied in one place (definitions.py).

A new landing file starts an `ingest` run (the sensor in defs/ingest/sensors.py): raw
tables, staging and the incremental models for its day. Everything after that
layer is materialized by declarative automation, with nobody clicking:

- marts, the CRM exports, the BI snapshot and the report: as soon as what they
  read has changed;
- the recommender's evaluation and training: once a day (RETRAIN_CRON), after the
  marts have been updated since; recommendations, similar titles, rails,
  clusters and churn risk are re-scored from the promoted model on every change;
- the CRM sync: like the exports; the sync step runs the GX gates again itself
  and stops, leaving the target as it was, when one fails.
"""

from __future__ import annotations

import warnings

import dagster as dg

from orchestration.defs.ingest.jobs import DAILY_ASSETS, ingest

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class IngestIdle(dg.AutomationCondition):
    """True while no run of the `ingest` job is queued or running.

    The daily layer loads a landing range in one run; what follows it waits for
    that run to end and is then requested in one run, instead of starting on the
    partitions finished so far and again on the rest (any_deps_in_progress does
    not see a partition-range run in progress).
    """

    @property
    def name(self) -> str:
        return "ingest_idle"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        active = instance.get_run_ids(
            filters=dg.RunsFilter(job_name=ingest.name, statuses=_ACTIVE), limit=1
        )
        subset = context.get_empty_subset() if active else context.candidate_subset
        return dg.AutomationResult(context=context, true_subset=subset)


# Retraining cadence: evaluation and training of a new candidate, daily at 04:00 UTC
# (after the 02:00 ingest of the previous day).
RETRAIN_CRON = "0 4 * * *"

# Eager, except that a missing upstream *partition* does not hold an unpartitioned
# asset back: the daily layer has a partition for every calendar day, including
# days no file has arrived for yet. Unpartitioned inputs must exist. An asset that
# was never built starts on its own only when nothing upstream is missing, so a
# fresh install does not run dbt before the first file has been loaded.
_A = dg.AutomationCondition
_UNPARTITIONED_INPUT_MISSING = _A.any_deps_match(_A.missing() & ~_A.will_be_requested()).ignore(
    DAILY_ASSETS
)
ON_CHANGE = (
    _A.eager()
    .without(~_A.any_deps_missing())
    .replace("newly_missing", _A.newly_missing() & ~_A.any_deps_missing())
    & ~_UNPARTITIONED_INPUT_MISSING
    & IngestIdle()
)

# A fresh install trains as soon as its inputs exist rather than at the first 04:00.
# (on_missing() would not: the asset has been missing since the first evaluation.)
RETRAIN = (
    _A.on_cron(RETRAIN_CRON)
    | (_A.missing() & ~_UNPARTITIONED_INPUT_MISSING & ~_A.in_progress() & ~_A.execution_failed())
) & IngestIdle()

RETRAIN_KEYS = {dg.AssetKey(["ml", "model_evaluation"]), dg.AssetKey(["ml", "recommender_model"])}


def condition_for(spec: dg.AssetSpec) -> dg.AutomationCondition:
    if spec.key in RETRAIN_KEYS:
        return RETRAIN
    return ON_CHANGE


def apply(defs: dg.Definitions) -> dg.Definitions:
    """Give every asset after the daily layer its automation condition."""
    automated = dg.AssetSelection.all() - DAILY_ASSETS
    # Preview in 1.13 (dagster is pinned exactly), and the one way to set conditions
    # on dbt, ML and export assets from a single place.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_resolved_asset_specs(
            func=lambda spec: spec.replace_attributes(automation_condition=condition_for(spec)),
            selection=automated,
        )
