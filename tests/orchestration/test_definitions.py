"""The Dagster code location loads and wires the raw loader to the dbt models."""

from __future__ import annotations

import dagster as dg


def test_definitions_load_with_every_group_and_job(data_dir):
    from orchestration.definitions import defs

    d = defs()
    specs = {spec.key: spec for spec in d.resolve_all_asset_specs()}
    groups = {spec.group_name for spec in specs.values()}
    assert groups == {"ingestion", "staging", "marts", "ml", "quality", "exports", "serving"}

    raw_events = dg.AssetKey(["raw", "events"])
    assert raw_events in specs
    stg_player = next(k for k in specs if k.path[-1] == "stg_player_events")
    # dbt's source raw.events is the loader's asset, so staging depends on it.
    assert raw_events in {dep.asset_key for dep in specs[stg_player].deps}
    assert specs[raw_events].partitions_def is not None
    for spec in specs.values():
        assert spec.description, f"{spec.key} has no description"
        assert spec.owners, f"{spec.key} has no owner"

    for job in ("ingest", "build_warehouse"):
        assert d.resolve_job_def(job) is not None
    checks = {key.name for key in d.resolve_asset_graph().asset_check_keys}
    assert "load_reconciliation" in checks
    # The quarantine's warning check runs in the ingest job, after the staging views.
    assert "staging_quarantine" in checks
    ingest_checks = d.resolve_job_def("ingest").asset_layer.asset_graph.asset_check_keys
    assert "staging_quarantine" in {key.name for key in ingest_checks}


def test_instance_yaml_switches_to_postgres_by_environment(data_dir, monkeypatch):
    from ottp import instance

    monkeypatch.delenv(instance.POSTGRES_URL_VAR, raising=False)
    assert "sqlite" in instance.instance_yaml()["storage"]
    monkeypatch.setenv(instance.POSTGRES_URL_VAR, "postgresql://postgres@127.0.0.1:5432/test")
    storage = instance.instance_yaml()["storage"]
    assert storage == {"postgres": {"postgres_url": {"env": instance.SQLALCHEMY_URL_VAR}}}
    assert (
        instance.sqlalchemy_url("postgresql://postgres@127.0.0.1:5432/test")
        == "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    )

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = instance.prepare_dagster_home()
    assert home == data_dir / "dagster_home"
    assert "postgres_url" in (home / "dagster.yaml").read_text()
