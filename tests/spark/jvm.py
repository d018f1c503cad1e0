"""One Spark JVM for every Spark step of the test session.

Starting a JVM and its Hive catalog costs 10 to 15 s, and the Spark tests ran a dozen
steps (the Spark loader, dbt, the recommender, small pyspark scripts), each in a
process of its own. Here one long-lived process (``python -m tests.spark.jvm``)
holds the Spark session and runs the steps one after another, in process: dbt
through ``dbtRunner`` (dbt-spark's ``session`` method reuses the process's
session), the loader and the recommender through their ``main``. The embedded
Derby metastore still sees one JVM. Between test modules, :meth:`SparkSteps.reset`
drops every database, so each module starts from an empty warehouse.

Protocol: one JSON request per line on the runner's stdin; the runner answers with
one line holding :data:`REPLY` and the JSON reply (anything else on its stdout is the JVM's).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

REPLY = "@@spark-steps-reply@@ "


@dataclass
class StepResult:
    """What a step gave: like subprocess.CompletedProcess (returncode, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str


class SparkSteps:
    """The client: starts the runner with the session's data folder, sends it steps."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir = data_dir
        self.warehouse = data_dir / "spark" / "warehouse"
        self.env = dict(env, OTTP_DATA_DIR=str(data_dir), OTTP_DBT_TARGET="spark")
        self.env.pop("OTTP_LANDING_DIR", None)
        self._log = open(data_dir.parent / "spark-steps.log", "w")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.spark.jvm"],
            cwd=Path(__file__).resolve().parents[2],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def _call(self, request: dict) -> StepResult:
        assert self._proc.poll() is None, "the Spark steps process has exited"
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if REPLY in line:  # the JVM may have left half a line before it
                return StepResult(**json.loads(line.split(REPLY, 1)[1]))
        raise AssertionError(f"the Spark steps process died (log: {self._log.name})")

    def dbt(self, args: list[str], env: dict[str, str] | None = None) -> StepResult:
        return self._call({"op": "dbt", "argv": args, "env": env or {}})

    def spark_load(self, argv: list[str], env: dict[str, str] | None = None) -> StepResult:
        return self._call({"op": "spark_load", "argv": argv, "env": env or {}})

    def recommender(self, argv: list[str], env: dict[str, str] | None = None) -> StepResult:
        return self._call({"op": "recommender", "argv": argv, "env": env or {}})

    def python(self, code: str, argv: list[str] | None = None) -> StepResult:
        """Run a script in the runner (``sys.argv[1:]`` = argv), its session at hand."""
        return self._call({"op": "python", "code": code, "argv": argv or [], "env": {}})

    def reset(self) -> None:
        """Drop every database but default: the next module starts from nothing."""
        result = self._call({"op": "reset", "argv": [], "env": {}})
        assert result.returncode == 0, result.stderr

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._log.close()


def _dbt(argv: list[str]) -> int:
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(argv)
    if result.exception is not None:
        print(f"dbt: {result.exception}", file=sys.stderr)
        return 2
    return 0 if result.success else 1


def _spark_load(argv: list[str]) -> int:
    from ottp.ingest import spark_load

    return spark_load.main(argv)


def _recommender(argv: list[str]) -> int:
    from ml import spark_flows

    return spark_flows.main(argv)


def _python(code: str, argv: list[str]) -> int:
    saved, sys.argv = sys.argv, ["-c", *argv]
    try:
        exec(compile(code, "<step>", "exec"), {"__name__": "__main__"})
    finally:
        sys.argv = saved
    return 0


def _reset(argv: list[str]) -> int:
    from ottp import spark

    session = spark.session("ottp-tests")
    for row in session.sql("show databases").collect():
        if row[0] != "default":
            session.sql(f"drop database if exists `{row[0]}` cascade")
    session.catalog.clearCache()
    return 0


_OPS = {"dbt": _dbt, "spark_load": _spark_load, "recommender": _recommender, "reset": _reset}


def _run(request: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    os.environ.update(request["env"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if request["op"] == "python":
                code = _python(request["code"], request["argv"])
            else:
                code = _OPS[request["op"]](request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        err.write(traceback.format_exc())
        code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    protocol = sys.stdout
    for line in sys.stdin:
        if line.strip():
            reply = _run(json.loads(line))
            protocol.write(REPLY + json.dumps(reply) + "\n")
            protocol.flush()


if __name__ == "__main__":
    main()
