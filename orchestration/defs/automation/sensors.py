"""The sensor that evaluates the automation conditions of policies.py."""

import dagster as dg

warehouse_automation = dg.AutomationConditionSensorDefinition(
    "warehouse_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    # policies.IngestIdle is Python of this project: evaluated in the code server.
    use_user_code_server=True,
    description="Materializes every asset after the daily layer when what it "
    "reads has changed (conditions in orchestration/defs/automation/policies.py).",
)
