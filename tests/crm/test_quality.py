"""The GX quality gates on the export tables: clean data passes, every defect is caught."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from ottp.crm import contract, gates
from ottp.crm.targets import LastSync
from tests.crm.test_sync import build_exports

CLEAN = gates.Limits(min_rows_for_bound=0)


def add_marts(path, extra: str = "") -> None:
    """The marts the gates join against, consistent with build_exports' rows."""
    con = duckdb.connect(str(path))
    con.execute(
        """
        create schema if not exists raw;
        create or replace table marts.users as
            select user_id, true as is_contactable from exports.crm_contacts;
        create or replace table marts.titles as
            select 't_' || i as title_id, true as is_available from range(200) as t(i);
        create or replace table marts.plays as
            select 'u_0000' as user_id, 't_1' as title_id, true as is_valid_play;
        create or replace table raw.deleted_users (pseudonym varchar);
        """
    )
    if extra:
        con.execute(extra)
    con.close()


@pytest.fixture(scope="module")
def clean_warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "warehouse.duckdb"
    build_exports(path)
    add_marts(path)
    return path


def test_clean_exports_pass_and_results_are_kept(clean_warehouse, tmp_path):
    results = gates.validate(
        warehouse_path=clean_warehouse, last_sync=None, limits=CLEAN, results_dir=tmp_path
    )
    assert set(results) == {t.name for t in contract.TABLES}
    for table, gate in results.items():
        assert gate.success, (table, gate.summary_markdown())
        assert gate.evaluated >= 7
        saved = json.loads(gate.results_path.read_text())
        assert saved["great_expectations"]["success"] is True
        assert (tmp_path / table / "latest.txt").read_text().strip() == gate.results_path.name
    assert "passed" in results["crm_contacts"].summary_markdown()


def test_every_defect_fails_its_expectation_with_sample_rows(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    build_exports(path)
    add_marts(
        path,
        """
        -- contacts: a duplicate, a bad segment and stage, an opted-out and a
        -- deleted user's pseudonym, a contact without recommendations
        insert into exports.crm_contacts
            select * from exports.crm_contacts where user_id = 'u_0001';
        update exports.crm_contacts set highest_segment = 'superfan' where user_id = 'u_0002';
        update exports.crm_contacts set lifecycle_stage = 'zombie' where user_id = 'u_0003';
        update marts.users set is_contactable = false where user_id = 'u_0004';
        insert into raw.deleted_users values ('u_0005');
        delete from exports.crm_recommendations where user_id = 'u_0006';
        -- recommendations: watched, outside the catalog, duplicate rank, too many
        update exports.crm_recommendations set title_id = 't_1'
            where user_id = 'u_0000' and rank = 3;
        update exports.crm_recommendations set title_id = 't_5000'
            where user_id = 'u_0007' and rank = 1;
        update exports.crm_recommendations set rank = 1 where user_id = 'u_0008' and rank = 2;
        insert into exports.crm_recommendations
            (user_id, rank, title_id, title_name, score, reason, reason_title_id)
            select 'u_0009', 5 + i, 't_' || (100 + i), 'x', 0.1, 'r', null
            from range(1, 60) as t(i);
        -- similar titles: one outside the catalog, one similar to itself
        update exports.crm_similar_titles set similar_title_id = 't_9999'
            where title_id = 't_3' and rank = 1;
        update exports.crm_similar_titles set similar_title_id = title_id
            where title_id = 't_4' and rank = 1;
        -- triggers: unknown scenario, user not a contact
        update exports.crm_triggers set scenario = 'birthday' where user_id = 'u_0002';
        insert into exports.crm_triggers select * replace ('x1' as trigger_id, 'u_7777' as user_id)
            from exports.crm_triggers limit 1;
        """,
    )
    results = gates.validate(
        warehouse_path=path, last_sync=None, limits=CLEAN, results_dir=tmp_path / "q"
    )
    failed = {
        table: {f.description.split(" (")[0]: f for f in gate.failures}
        for table, gate in results.items()
    }
    assert not any(g.success for g in results.values())

    contacts = failed["crm_contacts"]
    assert {
        "key unique",
        "segment in the allowed set",
        "lifecycle stage in the allowed set",
        "no opted-out or deleted user",
    } <= set(contacts)
    assert {s["user_id"] for s in contacts["no opted-out or deleted user"].sample} == {
        "u_0004",
        "u_0005",
    }
    assert contacts["segment in the allowed set"].sample[0]["user_id"] == "u_0002"

    recs = failed["crm_recommendations"]
    assert recs["none already watched"].sample == [
        {
            "watched_count": 1,
            "user_id": "u_0000",
            "watched_title_ids": "t_1",
            "outside_catalog_title_ids": None,
        }
    ]
    assert recs["none outside the catalog"].sample[0]["outside_catalog_title_ids"] == "t_5000"
    assert recs["key"].unexpected_count == 1  # "key (user_id, rank) unique"
    assert recs["1..50 recommendations per user"].sample[0]["user_id"] == "u_0009"

    similar = failed["crm_similar_titles"]
    assert set(similar) == {"both titles in the catalog", "a title is not similar to itself"}

    triggers = failed["crm_triggers"]
    assert {
        "scenario in the allowed set",
        "user is a crm_contacts row",
        "no opted-out or deleted user",
    } <= set(triggers)

    markdown = results["crm_recommendations"].summary_markdown()
    assert "none already watched" in markdown and "t_1" in markdown


def test_circuit_breaker_and_freshness_compare_with_the_last_sync(clean_warehouse, tmp_path):
    last = LastSync(
        run_id="previous",
        finished_at=None,
        # the CRM already holds data as of a later time than the warehouse has
        source_as_of=datetime(2026, 10, 1),
        row_counts={"crm_contacts": 500, "crm_recommendations": 250, "crm_similar_titles": 60},
    )
    results = gates.validate(
        ["crm_contacts", "crm_recommendations"],
        warehouse_path=clean_warehouse,
        last_sync=last,
        limits=gates.Limits(min_rows_for_bound=0, max_age_hours=24),
        results_dir=tmp_path,
        now=datetime(2026, 10, 5),
    )
    contacts = {f.description.split(":")[0]: f for f in results["crm_contacts"].failures}
    assert set(contacts) == {"circuit breaker", "freshness"}
    breaker = next(f for f in results["crm_contacts"].failures if "circuit" in f.description)
    assert breaker.observed == 50 and "400..1,000" in breaker.description
    assert len([f for f in results["crm_contacts"].failures if "freshness" in f.description]) == 2
    assert results["crm_recommendations"].success  # 250 rows, as last time
