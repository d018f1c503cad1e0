"""The likely-bot flag of int_sessions against the bots the simulator planted.

The event contract describes bots as accounts playing non-stop for 20+ hours
and anonymous scrapers with hundreds of page views an hour; binge-watchers
(sessions of 12 to 16 hours, with page views between their plays) are people.
One simulation with both kinds of bots and with binge-watchers is loaded and
sessionised; the flag is compared with the simulator's truth
(``_truth/devices.parquet``) per session, per device and per account, and a
bot account is no row of int_users (no person).
"""

from __future__ import annotations

import subprocess

import duckdb
import pytest

from ottp import config
from ottp.ingest import load
from ottp.simulator import simulate, truth_dir
from tests.conftest import dbt_folder_env

# Both kinds of bots and a few binge-watchers with 12-16 h sessions.
SIM = dict(users=300, titles=120, days=30, seed=7, dirty_rate=0.05)
MIN_PRECISION = 0.99
MIN_RECALL = 0.95


@pytest.fixture(scope="module")
def sessions(tmp_path_factory, dbt_saved_parse):
    root = tmp_path_factory.mktemp("bots")
    landing = root / "landing"
    warehouse = root / "warehouse.duckdb"
    simulate(landing, **SIM)
    load.load_landing(warehouse, landing)
    # in the warehouse's folder, from the session's saved parse (tests/conftest.py)
    env = {**config.dbt_env(), **dbt_folder_env(OTTP_DATA_DIR=str(root))}
    out = subprocess.run(
        [
            config.dbt_executable(),
            "run",
            "--select",
            "+int_sessions",
            "+int_users",
            "--profiles-dir",
            str(config.DBT_PROJECT_DIR),
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--target-path",
            str(dbt_saved_parse(root / "target")),
            "--log-path",
            str(root / "logs"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    con = duckdb.connect(str(warehouse))
    con.execute(
        "create temp table truth as select *, coalesce(user_id, 'device:' || device_id) "
        "as actor_id from read_parquet(?)",
        [str(truth_dir(landing) / "devices.parquet")],
    )
    yield con
    con.close()


def _score(con: duckdb.DuckDBPyConnection, flagged: str, planted: str) -> tuple[float, float]:
    """Precision and recall of the ids ``flagged`` selects against those ``planted`` selects."""
    tp, n_flagged, n_planted = con.execute(
        f"with f as ({flagged}), p as ({planted}) select "
        "(select count(*) from f where id in (select id from p)), "
        "(select count(*) from f), (select count(*) from p)"
    ).fetchone()
    assert n_planted > 0
    return (tp / n_flagged if n_flagged else 0.0), tp / n_planted


def test_the_simulation_has_both_kinds_of_bots_and_binge_watchers(sessions):
    kinds = {
        k
        for (k,) in sessions.execute("select distinct bot_kind from truth where is_bot").fetchall()
    }
    assert kinds == {"non_stop_player", "scraper"}
    binge = sessions.execute(
        "select count(*) from intermediate.int_sessions as s "
        "where s.duration_s > 12 * 3600 "
        "and s.actor_id not in (select actor_id from truth where is_bot)"
    ).fetchone()[0]
    assert binge > 0, "no binge-watcher in the simulation: the test would prove nothing"


def test_sessions_flagged_as_bots_are_the_planted_bots(sessions):
    # a planted bot's account or device has no other activity: all its sessions are bots
    precision, recall = _score(
        sessions,
        "select session_id as id from intermediate.int_sessions where is_likely_bot",
        "select session_id as id from intermediate.int_sessions "
        "where actor_id in (select actor_id from truth where is_bot)",
    )
    assert precision >= MIN_PRECISION, f"session precision {precision:.3f}"
    assert recall >= MIN_RECALL, f"session recall {recall:.3f}"


def test_devices_and_accounts_flagged_as_bots_are_the_planted_bots(sessions):
    precision, recall = _score(
        sessions,
        "select distinct device_id as id from intermediate.int_sessions where is_likely_bot",
        "select device_id as id from truth where is_bot",
    )
    assert precision >= MIN_PRECISION, f"device precision {precision:.3f}"
    assert recall >= MIN_RECALL, f"device recall {recall:.3f}"
    precision, recall = _score(
        sessions,
        "select distinct user_id as id from intermediate.int_sessions "
        "where is_likely_bot and user_id is not null",
        "select user_id as id from truth where is_bot and user_id is not null",
    )
    assert precision >= MIN_PRECISION, f"account precision {precision:.3f}"
    assert recall >= MIN_RECALL, f"account recall {recall:.3f}"


def test_binge_watchers_are_never_flagged(sessions):
    flagged_people = sessions.execute(
        "select count(*) from intermediate.int_sessions "
        "where is_likely_bot and actor_id not in (select actor_id from truth where is_bot)"
    ).fetchone()[0]
    assert flagged_people == 0


def test_a_bot_account_is_no_user(sessions):
    accounts = sessions.execute(
        "select count(*) from intermediate.int_users "
        "where user_id in (select user_id from truth where is_bot)"
    ).fetchone()[0]
    assert accounts == 0
