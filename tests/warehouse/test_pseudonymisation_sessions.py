"""A deleted user after pseudonymisation: no real id left in the sessions, the next
incremental build agrees with a full refresh (plays still find their sessions), and
the rebuilt marts hold the person once, deleted and never contactable."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, timedelta

import duckdb
import pytest

from ottp import config, privacy
from ottp.ingest import load
from tests.conftest import dbt_folder_env, make_event, write_landing

DAYS = 4
FIRST = date(2026, 8, 1)


def _dbt(*args: str) -> None:
    """dbt on the data folder's warehouse, run in that folder (the relative path of the
    session's saved parse, which the module fixture copies to dbt_target)."""
    work = config.settings().data_dir
    out = subprocess.run(
        [
            config.dbt_executable(),
            *args,
            "--profiles-dir",
            str(config.DBT_PROJECT_DIR),
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--target-path",
            str(work / "dbt_target"),
            "--log-path",
            str(work / "dbt_logs"),
        ],
        cwd=work,
        env={**config.dbt_env(), **dbt_folder_env()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, dbt_saved_parse):
    root = tmp_path_factory.mktemp("pseudo")
    mp = pytest.MonkeyPatch()
    mp.setenv("OTTP_DATA_DIR", str(root))
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    from ottp.simulator import simulate

    simulate(root / "landing", users=60, titles=40, days=DAYS, seed=21, dirty_rate=0.0)
    load.load_landing(root / "warehouse.duckdb", root / "landing")
    dbt_saved_parse(root / "dbt_target")
    _dbt("build", "--exclude", "path:models/exports")
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def deleted(warehouse):
    """The most active contactable user asks for deletion; the pass and the next build run."""
    root = warehouse
    path = root / "warehouse.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    user = con.execute(
        "select p.user_id from marts.plays as p "
        "join marts.users as u on p.user_id = u.user_id "
        "where p.is_valid_play and u.is_contactable "
        "group by 1 order by count(*) desc, 1 limit 1"
    ).fetchall()[0][0]
    people_before = con.execute("select count(*) from marts.users").fetchall()[0][0]
    con.close()
    day = FIRST + timedelta(days=DAYS)
    write_landing(
        root / "landing",
        [
            make_event(
                event_type="deletion_request",
                user_id=user,
                properties={},
                occurred_at=f"{day}T08:00:00.000Z",
                received_at=f"{day}T08:00:01.000Z",
            ),
            # someone else keeps watching: the next build has new events to process
            make_event(
                user_id="u_other",
                occurred_at=f"{day}T09:00:00.000Z",
                received_at=f"{day}T09:00:01.000Z",
            ),
        ],
        day=day,
        name="part-deletion.ndjson.gz",
    )
    load.load_landing(path, root / "landing")
    report = privacy.pseudonymise_deleted_users(path)
    assert report.users == 1

    con = duckdb.connect(str(path), read_only=True)
    leaks = con.execute(
        "select count(*) from intermediate.int_sessions where actor_id = ? or user_id = ?",
        [user, user],
    ).fetchall()[0][0]
    con.close()
    assert leaks == 0, "the real id is still in int_sessions"

    # the incremental build after the deletion: its tests (plays belong to sessions) pass
    _dbt("build", "--exclude", "path:models/exports")
    return root, user, people_before


def test_the_next_incremental_build_after_a_deletion_matches_a_full_refresh(deleted):
    root, _, _ = deleted
    path = root / "warehouse.duckdb"
    # a full refresh from the (pseudonymised) raw events gives the same sessions
    copy = root / "full"
    copy.mkdir()
    shutil.copy(path, copy / "warehouse.duckdb")
    con = duckdb.connect(str(path), read_only=True)
    incremental = set(
        con.execute(
            "select session_id, actor_id, started_at, ended_at, event_count "
            "from intermediate.int_sessions"
        ).fetchall()
    )
    con.close()
    mp = pytest.MonkeyPatch()
    mp.setenv("OTTP_DATA_DIR", str(copy))
    try:
        _dbt("run", "--full-refresh", "--select", "int_sessions")
    finally:
        mp.undo()
    con = duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True)
    full = set(
        con.execute(
            "select session_id, actor_id, started_at, ended_at, event_count "
            "from intermediate.int_sessions"
        ).fetchall()
    )
    con.close()
    assert incremental == full


def test_a_deleted_person_is_one_row_deleted_and_never_contactable(deleted):
    root, user, people_before = deleted
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    pseudonyms = [p for (p,) in con.execute("select pseudonym from raw.deleted_users").fetchall()]
    assert len(pseudonyms) == 1
    rows = con.execute(
        "select user_id, is_deleted, is_contactable from marts.users "
        "where user_id = ? or user_id = ?",
        [user, pseudonyms[0]],
    ).fetchall()
    # the pseudonym carries the person; the real id, left on the request alone, is no row
    assert rows == [(pseudonyms[0], True, False)]
    # one row per person: those before, and u_other who appeared with the deletion
    assert con.execute("select count(*) from marts.users").fetchall()[0][0] == people_before + 1
    for mart in ("marts.users", "marts.user_segments", "marts.user_lifecycle"):
        deleted_rows = con.execute(
            f"select count(*) from {mart} where user_id = ? and is_deleted", [pseudonyms[0]]
        ).fetchall()[0][0]
        assert deleted_rows == 1, mart
    assert (
        con.execute(
            "select count(*) from marts.users where is_deleted and is_contactable"
        ).fetchall()[0][0]
        == 0
    )
    con.close()
