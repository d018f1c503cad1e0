"""The demo's quiet terminal: library and child-process output to the log, stage lines on screen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ottp import pipeline, run_log


def test_output_of_this_process_and_its_children_goes_to_the_log(tmp_path, capfd):
    log = tmp_path / "logs" / "demo.log"
    with run_log.quiet_terminal(log) as say:
        print("from python")
        # what warnings.showwarning does outside pytest, which records them instead
        print("FutureWarning: a library warning", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('from a child\\n')"])
        say("[1/7] generate")
    out, err = capfd.readouterr()
    assert out == "[1/7] generate\n"
    assert err == ""
    text = log.read_text()
    for expected in ("from python", "a library warning", "from a child"):
        assert expected in text


def test_a_failure_is_logged_and_its_tail_shown(tmp_path, capfd):
    log = tmp_path / "demo.log"
    with pytest.raises(RuntimeError), run_log.quiet_terminal(log):
        raise RuntimeError("dbt build failed")
    assert "RuntimeError: dbt build failed" in log.read_text()
    capfd.readouterr()
    run_log.show_tail(log)
    _, err = capfd.readouterr()
    assert str(log) in err
    assert "dbt build failed" in err


@pytest.mark.parametrize(
    ("step_key", "stage"),
    [
        ("warehouse_models", "dbt build"),
        ("ml__recommendations", "ML"),
        ("taste_clusters", "ML"),
        ("export_models", "exports + gates"),
        ("crm_quality_gates", "exports + gates"),
        ("crm_sync", "sync"),
        ("quality__pipeline_report", "report"),
        ("raw__deleted_users", None),
        ("bi__marts_snapshot", None),
    ],
)
def test_build_steps_map_to_the_demo_stages(step_key, stage):
    assert pipeline.stage_of(step_key) == stage


def test_each_stage_is_reported_once_and_in_order():
    class Event:
        event_type_value = "STEP_START"

    class Entry:
        dagster_event = Event()

        def __init__(self, step_key):
            self.step_key = step_key

    lines = []
    listener = pipeline._stage_listener(lines.append)
    steps = ["raw__deleted_users", "warehouse_models", "bi__marts_snapshot", "ml__churn_risk",
             "taste_clusters", "export_models", "crm_quality_gates", "crm_sync",
             "freshness_check_e08ab11c", "quality__pipeline_report"]  # fmt: skip
    for step in steps:
        listener(Entry(step))
    assert lines == ["dbt build", "ML", "exports + gates", "sync", "report"]
