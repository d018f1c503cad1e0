"""The serving bundle on a small built warehouse: its contents equal the marts, a
publication is atomic for readers and the watcher, old versions are pruned, a
damaged file is refused, and the Dagster asset publishes one and records its version."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import dagster as dg
import duckdb
import pytest

from ottp import config, privacy
from ottp.ingest import load
from ottp.realtime import bundle
from tests.crm.test_exports import STAND_IN_ML, dbt

NO_TESTS = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """simulate -> load -> marts -> stand-in recommender tables -> exports (no dbt tests)."""
    root = tmp_path_factory.mktemp("bundle")
    mp = pytest.MonkeyPatch()
    mp.setenv("OTTP_DATA_DIR", str(root))
    mp.setenv("OTTP_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    mp.delenv("OTTP_BUNDLE_DIR", raising=False)
    from ottp.simulator import simulate

    simulate(root / "landing", users=40, titles=40, days=3, seed=5, dirty_rate=0.0)
    path = root / "warehouse.duckdb"
    load.load_landing(path, root / "landing")
    dbt("build", "--exclude", "path:models/exports", *NO_TESTS)
    con = duckdb.connect(str(path))
    con.execute(STAND_IN_ML)
    con.close()
    privacy.pseudonymise_deleted_users(path)
    dbt("build", "--select", "path:models/exports", *NO_TESTS)
    yield path
    mp.undo()


def query(path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _settings(bundle_dir, poll: float = 0.01) -> config.RealtimeSettings:
    return dataclasses.replace(
        config.realtime_settings(), bundle_dir=bundle_dir, bundle_poll_seconds=poll
    )


def test_the_bundle_holds_what_the_marts_hold(warehouse, tmp_path):
    info = bundle.publish_bundle(warehouse, tmp_path)
    assert bundle.current_version(tmp_path) == info.version
    for name, sql in bundle.TABLES.items():
        assert info.rows[name] == query(warehouse, f"select count(*) from ({sql})")[0][0], name
    assert info.rows["lifecycle"] > 0 and info.rows["watched"] > 0
    b = bundle.load_bundle(tmp_path)
    assert b.version == info.version
    assert b.thresholds == dict(
        query(warehouse, "select segment, min_titles_watched from reference.segment_thresholds")
    )
    assert b.rules == bundle.dbt_vars()
    assert b.rules["valid_play_min_s"] == 30 and b.rules["continue_watching_min_position_s"] == 60
    as_of = query(warehouse, "select max(as_of_at) from marts.user_lifecycle")[0][0]
    assert b.as_of == as_of
    titles = query(warehouse, "select title_id, category, duration_s from marts.titles")
    assert {t: (c, d) for t, c, d in titles} == {
        t: (v["category"], v["duration_s"]) for t, v in b.titles.items()
    }
    stages = query(warehouse, "select user_id, lifecycle_stage from marts.user_lifecycle")
    assert {u: b.lifecycle_of(u)["lifecycle_stage"] for u, _ in stages} == dict(stages)
    # the distinct titles per category are the ones user_category_segments counted
    segments = query(
        warehouse,
        "select user_id, category, titles_watched, segment from marts.user_category_segments",
    )
    for user, category, watched, segment in segments:
        assert len(b.watched_titles(user).get(category, ())) == watched
        assert {r["category"]: r["segment"] for r in b.segments.rows(user)}[category] == segment
    cw = query(
        warehouse, "select user_id, title_id, resume_position_s from marts.continue_watching"
    )
    assert {(u, t, p) for u, t, p in cw} == {
        (u, r["title_id"], r["resume_position_s"])
        for u in b.continue_watching.users()
        for r in b.continue_watching.rows(u)
    }
    ledger = query(warehouse, "select trigger_id from exports.crm_trigger_log")
    assert b.trigger_ids == {t for (t,) in ledger}
    assert b.lifecycle_of("u_nobody") is None and b.watched_titles("u_nobody") == {}
    manifest = json.loads((info.path / bundle.MANIFEST).read_text())
    assert manifest["version"] == info.version and manifest["as_of"] == as_of.isoformat()
    assert {f["file"] for f in manifest["files"].values()} == {
        p.name for p in info.path.glob("*.parquet")
    }


def test_readers_never_see_a_half_published_bundle_and_old_versions_are_pruned(warehouse, tmp_path):
    first = bundle.publish_bundle(warehouse, tmp_path)
    watcher = bundle.BundleWatcher(_settings(tmp_path)).start()
    held = watcher.current
    assert held.version == first.version
    published = {first.version}
    seen: set[str] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                for b in (bundle.load_bundle(tmp_path), watcher.current):
                    # a complete bundle: every table there, the rows the manifest counts
                    assert len(b.lifecycle) == first.rows["lifecycle"]
                    assert len(b.titles) == first.rows["titles"]
                    seen.add(b.version)
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                errors.append(e)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(5):
            published.add(bundle.publish_bundle(warehouse, tmp_path).version)
    finally:
        done.set()
        reader.join(timeout=30)
    last = max(published)
    try:
        assert not errors, errors
        assert seen <= published and len(seen) > 1
        assert wait_for(lambda: watcher.version == last), (watcher.version, last)
        assert watcher.swaps >= 1
    finally:
        watcher.stop()
    # the object a request took before the swaps still answers, its files long gone
    assert first.version not in bundle.versions(tmp_path)
    assert held.lifecycle_of(next(held.lifecycle.users())) is not None
    assert bundle.versions(tmp_path) == sorted(published)[-bundle.KEEP_VERSIONS :]
    assert not list((tmp_path / bundle.BUNDLES).glob(".tmp-*"))


def test_no_bundle_yet_and_a_damaged_one(warehouse, tmp_path):
    assert bundle.load_bundle(tmp_path) is None
    watcher = bundle.BundleWatcher(_settings(tmp_path))
    assert watcher.refresh() is False and watcher.current is None and watcher.version is None
    good = bundle.publish_bundle(warehouse, tmp_path)
    assert watcher.refresh() is True and watcher.version == good.version
    bad = bundle.publish_bundle(warehouse, tmp_path)
    with open(bad.path / "watched.parquet", "r+b") as f:
        f.seek(8)
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="checksum"):
        bundle.load_bundle(tmp_path)
    # the watcher keeps serving the version it holds
    assert watcher.refresh() is False and watcher.version == good.version
    (tmp_path / bundle.POINTER).write_text("../../etc\n")
    with pytest.raises(ValueError, match="does not name a bundle version"):
        bundle.current_version(tmp_path)


def test_the_dagster_asset_publishes_a_bundle_and_records_its_version(
    warehouse, tmp_path, monkeypatch
):
    from orchestration.defs.resources import WarehouseResource
    from orchestration.defs.serving.assets import serving_bundle

    monkeypatch.setenv("OTTP_BUNDLE_DIR", str(tmp_path / "serving"))
    result = dg.materialize(
        [serving_bundle],
        resources={
            "warehouse": WarehouseResource(
                data_dir=str(warehouse.parent),
                landing_dir=str(warehouse.parent / "landing"),
                warehouse_path=str(warehouse),
            )
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    version = bundle.current_version(tmp_path / "serving")
    assert metadata["bundle_version"].value == version
    assert metadata["users"].value == len(bundle.load_bundle(tmp_path / "serving").lifecycle)
    assert metadata["path"].value == str(tmp_path / "serving" / bundle.BUNDLES / version)
