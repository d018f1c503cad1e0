"""What every run is given, in one place: the resources and the executor."""

from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.lib.dbt.project import dbt_project
from ottp import config


class WarehouseResource(dg.ConfigurableResource):
    """Where the warehouse file and the landing folder are, from the environment."""

    data_dir: str
    landing_dir: str
    warehouse_path: str

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir)

    @property
    def warehouse(self) -> Path:
        return Path(self.warehouse_path)


@dg.definitions
def resources() -> dg.Definitions:
    settings = config.settings()
    config.export_dbt_env(settings)
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(
                data_dir=str(settings.data_dir),
                landing_dir=str(settings.landing_dir),
                warehouse_path=str(settings.warehouse_path),
            ),
            "dbt": DbtCliResource(
                project_dir=dbt_project,
                target=settings.dbt_target,
                dbt_executable=config.dbt_executable(),
            ),
        }
    )


@dg.definitions
def executor() -> dg.Definitions:
    # Steps of one run in parallel processes (one per core by default); the pools
    # (ottp/instance.py) still let only one step at a time write the DuckDB file.
    steps = config.settings().max_concurrent_steps
    return dg.Definitions(executor=dg.multiprocess_executor.configured({"max_concurrent": steps}))
