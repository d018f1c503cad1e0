"""The local Spark session the raw loader and the recommender use.

It is the session dbt's ``spark`` target opens (dbt_project/profiles.yml):
the same warehouse directory and Derby metastore under ``OTTP_DATA_DIR``, the
same UTC session time zone and ANSI mode off (dbt-spark forces it off), so a
table one writes is a table the other reads. The embedded Derby metastore
admits one JVM at a time: run the loader, dbt and the recommender one after
another, each in its own process (the CLI does), never two at once.

A production deployment points dbt at a Spark Thrift server or Databricks
instead (targets ``spark_thrift`` / ``spark_http``); see docs/scaling.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ottp import config
from ottp.config import Settings, settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_dir(s: Settings | None = None) -> Path:
    """Where the local Spark warehouse (Parquet tables) and its metastore live."""
    return (s or settings()).data_dir / "spark"


def spark_conf(s: Settings | None = None) -> dict[str, str]:
    """The session configuration; profiles.yml's ``spark`` target sets the same keys."""
    root = spark_dir(s)
    sizing = config.spark_session_settings()
    return {
        "spark.master": sizing["spark.master"],
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": sizing["spark.sql.shuffle.partitions"],
        "spark.driver.memory": sizing["spark.driver.memory"],
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        # Arrow moves the recommender's tables in and out in columns, not rows.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def session(app_name: str = "ottp", s: Settings | None = None) -> SparkSession:
    """The process's Spark session (created on first use, with Hive catalog support)."""
    from pyspark.sql import SparkSession

    spark_dir(s).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    for key, value in spark_conf(s).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def java_available() -> bool:
    """Whether a Java runtime is on PATH (pyspark starts a JVM)."""
    import shutil

    return bool(config.java_home() or shutil.which("java"))
