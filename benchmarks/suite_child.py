"""The child side of the suite: ``python -m benchmarks.suite_child NAME ARGS_JSON OUT_JSON``.

Runs one stage or peer function (``CHILDREN``) with the keyword arguments in ARGS_JSON
and writes what it returns, with the process's peak resident memory, to OUT_JSON. The
parent (benchmarks.suite_process) times the process from outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import suite_peers, suite_stages
from benchmarks.suite_process import dbt_command


def dbt(args: list[str], target_path: str) -> dict:
    """dbt in a small wrapper process, so its peak memory is measured like the others'.

    A failing dbt test does not stop the benchmark: the failed nodes are reported.
    """
    results = Path(target_path) / "run_results.json"
    results.unlink(missing_ok=True)
    proc = subprocess.run(dbt_command(args, Path(target_path)))
    if proc.returncode != 0 and not results.exists():
        raise RuntimeError(f"dbt {' '.join(args)} exited with {proc.returncode}")
    return {"returncode": proc.returncode}


CHILDREN = {
    "generate": suite_stages.generate,
    "load": suite_stages.load_days,
    "read_json": suite_peers.read_json,
    "empty_warehouse": suite_peers.empty_warehouse,
    "pandas_load": suite_peers.pandas_load,
    "pandas_sessions": suite_peers.pandas_sessions,
    "train": suite_stages.train,
    "recommend": suite_stages.recommend,
    "exports": suite_stages.build_exports,
    "quality": suite_stages.quality_gates,
    "sync": suite_stages.sync_target,
    "pg_mirror": suite_peers.mirror_to_postgres,
    "sync_peer": suite_peers.sync_peer,
    "dbt": dbt,
}


def peak_rss_kib() -> int:
    """This process's own high-water mark (VmHWM) and its children's.

    Not ru_maxrss of RUSAGE_SELF: after exec, Linux carries over the high-water
    mark of the forked copy, i.e. the parent's size at the fork. A child forked
    from this small process inherits little, so RUSAGE_CHILDREN is fair.
    """
    import resource

    own = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            own = int(line.split()[1])
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main(argv: list[str]) -> int:
    name, args_path, out_path = argv
    kwargs = json.loads(Path(args_path).read_text())
    result = CHILDREN[name](**kwargs)
    result["peak_rss_kib"] = peak_rss_kib()
    Path(out_path).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
