import dagster as dg

from ottp import config


@dg.definitions
def executor() -> dg.Definitions:
    # Steps of one run in parallel processes (one per core by default); the pools
    # (ottp/instance.py) still let only one step at a time write the DuckDB file.
    steps = config.settings().max_concurrent_steps
    return dg.Definitions(executor=dg.multiprocess_executor.configured({"max_concurrent": steps}))
