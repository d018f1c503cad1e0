"""The marts against what the simulator planted, on the demo data set (`ottp demo`'s seed).

The simulator knows each person's favourite categories, which devices it made bots and
how many seconds of content every playback really played (``ottp.simulator.truth_dir``).
One warehouse is built from the demo seed (load, then the dbt models the marts compared
here need) and compared with that truth:

- played time per user: the sum of ``marts.plays.played_s`` of the user's playbacks against
  the sum of their ``true_played_s`` (people's playbacks; a playback the marts lost counts
  0 s). Tolerance: 5 % per user.
- bot flags: sessions flagged ``is_likely_bot`` (``int_sessions``) against sessions of a bot
  device's actor (a non-stop player's account, a scraper's device); playbacks left out of
  ``marts.plays`` against the bots' playbacks. Precision and recall.
- fans per category: the (user, category) pairs ``user_category_segments.is_fan`` holds
  against the pairs the truth makes fans by the same rule (more than 5 distinct titles of
  the category with a valid play, 30 s of true play time or more); and, for the planted
  favourite category, whether a person who truly watched more than 5 of its titles is a fan.

docs/models.md ("Agreement with the simulator's truth") publishes the figures.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest

from ottp.cli import DEMO
from ottp.config import DBT_PROJECT_DIR, dbt_executable
from ottp.ingest import landing
from ottp.ingest.load import load_files
from ottp.simulator import simulate, truth_dir
from tests.conftest import dbt_folder_env

MARTS = ("plays", "sessions", "user_category_segments", "titles")
TOLERANCE = 0.05  # relative error of a user's played time that counts as agreeing


def agreement(warehouse: Path, truth: Path) -> dict[str, float]:
    """Every figure of the comparison, from a built warehouse and a run's truth folder.

    Users are matched through their playbacks (a deleted user's pseudonym maps to the
    person whose playbacks it holds), so a warehouse whose deleted users were
    pseudonymised compares the same way.
    """
    con = duckdb.connect()
    try:
        con.execute(f"attach '{warehouse}' as w (read_only)")
        for table, name in (
            ("t_devices", "devices"),
            ("t_favourites", "favourite_categories"),
            ("t_playbacks", "playbacks"),
        ):
            con.execute(f"create table {table} as select * from '{truth / name}.parquet'")
        con.execute("""
            create table ids as
            select distinct p.user_id mart_user_id, t.user_id
            from w.marts.plays p join t_playbacks t using (playback_id)""")
        out: dict[str, float] = {}
        row = con.execute(
            """
            with truth as (
                select user_id, sum(true_played_s) true_s from t_playbacks
                where not is_bot group by all
            ),
            mart as (
                select t.user_id, sum(p.played_s) mart_s
                from w.marts.plays p join t_playbacks t using (playback_id) group by all
            ),
            per_user as (
                select true_s, coalesce(mart_s, 0) mart_s,
                       abs(coalesce(mart_s, 0) - true_s) / true_s rel
                from truth left join mart using (user_id)
                where true_s > 0
            )
            select count(*), median(rel), avg((rel <= ?)::int), quantile_cont(rel, 0.95),
                   sum(true_s), sum(mart_s),
                   (select count(*) from w.marts.plays
                    where playback_id not in (select playback_id from t_playbacks))
            from per_user""",
            [TOLERANCE],
        ).fetchone()
        (
            out["users_compared"],
            out["played_median_rel_error"],
            out["played_share_within_tolerance"],
            out["played_p95_rel_error"],
            out["true_played_s"],
            out["mart_played_s"],
            out["mart_plays_unknown_to_truth"],
        ) = row
        row = con.execute("""
            with bot_actor as (
                select coalesce(user_id, 'device:' || device_id) actor_id from t_devices
                where is_bot
            ),
            s as (
                select s.is_likely_bot flagged, b.actor_id is not null truth
                from w.intermediate.int_sessions s left join bot_actor b using (actor_id)
            ),
            p as (
                select m.playback_id is null flagged, t.is_bot truth
                from w.intermediate.int_plays i
                join t_playbacks t using (playback_id)
                left join w.marts.plays m using (playback_id)
            )
            select (select count(*) filter (where flagged and truth) from s),
                   (select count(*) filter (where flagged) from s),
                   (select count(*) filter (where truth) from s),
                   (select count(*) filter (where flagged and truth) from p),
                   (select count(*) filter (where flagged) from p),
                   (select count(*) filter (where truth) from p)""").fetchone()
        s_tp, s_flag, s_true, p_tp, p_flag, p_true = row
        out.update(
            sessions_flagged=s_flag,
            sessions_bot=s_true,
            sessions_precision=s_tp / s_flag if s_flag else 1.0,
            sessions_recall=s_tp / s_true if s_true else 1.0,
            plays_flagged=p_flag,
            plays_bot=p_true,
            plays_precision=p_tp / p_flag if p_flag else 1.0,
            plays_recall=p_tp / p_true if p_true else 1.0,
        )
        con.execute("""
            create table fan_pairs as
            with threshold as (
                select min_titles_watched from w.reference.segment_thresholds
                where segment = 'fan'
            ),
            watched as (
                select t.user_id, ti.category, count(distinct t.title_id) titles
                from t_playbacks t join w.marts.titles ti using (title_id)
                where not t.is_bot and t.true_played_s >= 30
                group by all
            ),
            truth as (
                select user_id, category from watched
                where titles >= (select min_titles_watched from threshold)
            ),
            mart as (
                select distinct ids.user_id, s.category
                from w.marts.user_category_segments s
                join ids on ids.mart_user_id = s.user_id
                where s.is_fan
            )
            select coalesce(truth.user_id, mart.user_id) user_id,
                   coalesce(truth.category, mart.category) category,
                   truth.user_id is not null in_truth, mart.user_id is not null in_marts
            from truth full join mart using (user_id, category)""")
        row = con.execute("""
            select count(*) filter (where in_truth and in_marts),
                   count(*) filter (where in_truth), count(*) filter (where in_marts)
            from fan_pairs""").fetchone()
        both, truth_n, mart_n = row
        out.update(
            fans_truth=truth_n,
            fans_marts=mart_n,
            fans_precision=both / mart_n if mart_n else 1.0,
            fans_recall=both / truth_n if truth_n else 1.0,
            fan_categories_exact=con.execute("""
                select count(*) from (select category, count(*) filter (where in_truth) a,
                count(*) filter (where in_marts) b from fan_pairs group by all) where a = b
                """).fetchone()[0],
        )
        row = con.execute("""
            select count(*), count(*) filter (where f.in_marts)
            from t_favourites fav
            join fan_pairs f using (user_id, category)
            where fav.rank = 1 and f.in_truth""").fetchone()
        out["favourite_truth_fans"], out["favourite_fans_in_marts"] = row
        out["marts_fans_in_planted_top3"] = con.execute("""
            select avg((fav.user_id is not null)::int)
            from fan_pairs f left join t_favourites fav using (user_id, category)
            where f.in_marts""").fetchone()[0]
        return out
    finally:
        con.close()


def fans_by_category(warehouse: Path, truth: Path) -> list[tuple[str, int, int]]:
    """(category, fans the truth makes, fans the marts hold), for the docs' table."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{warehouse}' as w (read_only)")
        return con.execute(f"""
            with t as (select * from '{truth / "playbacks"}.parquet'),
            watched as (
                select t.user_id, ti.category, count(distinct t.title_id) n
                from t join w.marts.titles ti using (title_id)
                where not t.is_bot and t.true_played_s >= 30 group by all
            ),
            truth as (select category, count(*) filter (where n > 5) fans from watched
                      group by all),
            mart as (select category, count(*) filter (where is_fan) fans
                     from w.marts.user_category_segments group by all)
            select category, coalesce(truth.fans, 0), coalesce(mart.fans, 0)
            from truth full join mart using (category) order by category""").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, dbt_saved_parse) -> tuple[Path, Path]:
    """The demo seed loaded and the compared marts built: (warehouse, truth folder)."""
    root = tmp_path_factory.mktemp("truth_demo")
    landing_dir = root / "landing"
    simulate(landing_dir, **DEMO)
    warehouse = root / "warehouse.duckdb"
    report = load_files(warehouse, landing.discover(landing_dir))
    assert report.reconciles
    # in the warehouse's folder, from the session's saved parse (tests/conftest.py)
    env = dbt_folder_env()
    common = [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(dbt_saved_parse(root / "target")),
        "--log-path",
        str(root / "logs"),
    ]
    for args in (["seed"], ["run", "--select", *(f"+{m}" for m in MARTS)]):
        result = subprocess.run(
            [dbt_executable(), *args, *common],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-4000:]
    return warehouse, truth_dir(landing_dir)


@pytest.fixture(scope="module")
def figures(demo) -> dict[str, float]:
    return agreement(*demo)


def test_every_mart_playback_is_a_simulated_one(figures):
    assert figures["mart_plays_unknown_to_truth"] == 0
    assert figures["users_compared"] > 1000


def test_played_time_per_user(figures):
    assert figures["played_median_rel_error"] <= 0.001
    assert figures["played_share_within_tolerance"] >= 0.99
    assert figures["played_p95_rel_error"] <= 0.005
    assert abs(figures["mart_played_s"] / figures["true_played_s"] - 1) <= 0.005


def test_bot_flags(figures):
    assert figures["sessions_bot"] > 0 and figures["plays_bot"] > 0
    assert figures["sessions_precision"] >= 0.99 and figures["sessions_recall"] >= 0.95
    assert figures["plays_precision"] >= 0.99 and figures["plays_recall"] >= 0.95


def test_fans_per_category(figures):
    assert figures["fans_truth"] > 300
    assert figures["fans_precision"] >= 0.995 and figures["fans_recall"] >= 0.995
    # a person planted with a favourite category who truly watched more than 5 of its
    # titles is a fan of it in the marts
    assert figures["favourite_truth_fans"] > 100
    assert figures["favourite_fans_in_marts"] >= 0.995 * figures["favourite_truth_fans"]
    # and the marts' fans follow the planted tastes (the rest: second-tier tastes and
    # the 3 % of every choice the simulator spreads over all categories)
    assert figures["marts_fans_in_planted_top3"] >= 0.8
