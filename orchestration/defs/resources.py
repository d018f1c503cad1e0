"""What every run is given, in one place: the resources and the executor."""

from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.lib.dbt.project import dbt_project
from ottp import config

DEFS_DIR = Path(__file__).resolve().parent


def step_preload_modules() -> list[str]:
    """What a run's step processes fork from: Dagster, dagster-dbt and every module of
    the defs folder (the dbt assets read the manifest when imported)."""
    defs_modules = sorted(
        ".".join(("orchestration", "defs", *path.relative_to(DEFS_DIR).with_suffix("").parts))
        for path in DEFS_DIR.rglob("*.py")
        if path.name != "__init__.py"
    )
    return ["dagster", "dagster_dbt", "orchestration.definitions", *defs_modules]


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
    # Each step's process is forked from a server that has imported the code
    # location once per run: a spawned process spends tens of seconds importing
    # Dagster, dagster-dbt and the definitions before the step starts.
    steps = config.settings().max_concurrent_steps
    return dg.Definitions(
        executor=dg.multiprocess_executor.configured(
            {
                "max_concurrent": steps,
                "start_method": {"forkserver": {"preload_modules": step_preload_modules()}},
            }
        )
    )
