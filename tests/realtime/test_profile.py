"""The live profile: the merge of the serving bundle with the live state (segments,
lifecycle, continue-watching) as plain functions, then over HTTP against a real
server, where a posted play that makes a viewer a fan shows in the next GET."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import duckdb
import pytest
import requests

from ottp.realtime import bundle as bundles
from ottp.realtime import profile
from tests.conftest import make_event

AS_OF = datetime(2026, 8, 10, 23, 59, 59)
AFTER = AS_OF.replace(tzinfo=UTC) + timedelta(hours=1)
BEFORE = AS_OF.replace(tzinfo=UTC) - timedelta(hours=1)
DRAMA = [f"t_d{i:02d}" for i in range(1, 9)]
COMEDY = ["t_c01", "t_c02"]
UNAVAILABLE = "t_x01"
# user -> (stage, is_cancelled, is_deleted, highest_segment)
USERS = {
    "u_five": ("at_risk", False, False, "casual"),
    "u_churned": ("churned", False, False, "casual"),
    "u_cancelled": ("churned", True, False, "casual"),
    "u_new": ("new", False, False, "non_viewer"),
    "u_deleted": ("active", False, True, "casual"),
}


def tiny_warehouse(path, fan_min: int = 6) -> None:
    """Just the tables publish_bundle reads, with a viewer of five distinct drama titles."""
    con = duckdb.connect(str(path))
    con.execute("create schema reference; create schema marts; create schema exports")
    con.execute(
        "create table reference.segment_thresholds as select * from (values "
        "('fan', ?, 'fan'), ('hardcore_fan', 50, 'hardcore')) "
        "as t(segment, min_titles_watched, description)",
        [fan_min],
    )
    titles = [(t, "drama", True) for t in DRAMA] + [(t, "comedy", True) for t in COMEDY]
    titles.append((UNAVAILABLE, "drama", False))
    con.execute(
        "create table marts.titles (title_id varchar, category varchar, title_kind varchar, "
        "series_id varchar, next_episode_title_id varchar, duration_s double, "
        "is_episode boolean, is_available boolean)"
    )
    con.executemany(
        "insert into marts.titles values (?, ?, 'movie', null, null, 3000, false, ?)", titles
    )
    con.execute(
        "create table marts.user_lifecycle (user_id varchar, lifecycle_stage varchar, "
        "subscription_status varchar, highest_segment varchar, is_cancelled boolean, "
        "is_deleted boolean, last_play_at timestamp, as_of_at timestamp)"
    )
    con.executemany(
        "insert into marts.user_lifecycle values (?, ?, 'active', ?, ?, ?, ?, ?)",
        [
            (u, stage, highest, cancelled, deleted, AS_OF - timedelta(days=20), AS_OF)
            for u, (stage, cancelled, deleted, highest) in USERS.items()
        ],
    )
    con.execute(
        "create table marts.plays (user_id varchar, category varchar, title_id varchar, "
        "is_valid_play boolean)"
    )
    plays = [("u_five", "drama", t, True) for t in DRAMA[:5]]
    plays += [("u_five", "drama", DRAMA[2], True), ("u_five", "drama", DRAMA[6], False)]
    plays += [("u_five", "comedy", COMEDY[0], True), ("u_churned", "drama", DRAMA[0], True)]
    con.executemany("insert into marts.plays values (?, ?, ?, ?)", plays)
    con.execute(
        "create table marts.user_category_segments as select user_id, category, "
        "'casual' as segment, count(distinct title_id) as titles_watched, false as is_fan "
        "from marts.plays where is_valid_play group by all"
    )
    con.execute(
        "create table marts.continue_watching (user_id varchar, title_id varchar, "
        "resume_position_s double, resume_pct double, remaining_s double, "
        "continue_rank bigint, last_watched_at timestamp)"
    )
    con.executemany(
        "insert into marts.continue_watching values (?, ?, ?, ?/3000, 3000 - ?, ?, ?)",
        [
            ("u_five", DRAMA[4], 600, 600, 600, 1, AS_OF - timedelta(days=20)),
            ("u_five", COMEDY[0], 300, 300, 300, 2, AS_OF - timedelta(days=21)),
        ],
    )
    con.execute(
        "create table exports.crm_trigger_log as select 'x1' as trigger_id, "
        "'u_five' as user_id, 'at_risk' as scenario, 'u_five' as subject_id"
    )
    con.close()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    tiny_warehouse(root / "warehouse.duckdb")
    bundles.publish_bundle(root / "warehouse.duckdb", root / "serving")
    return root / "serving"


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return bundles.load_bundle(bundle_dir)


def progress(
    position: float,
    at: datetime,
    *,
    valid: bool = True,
    complete: bool = False,
    min_position: float = 60,
) -> SimpleNamespace:
    """One title's live progress, shaped like the live state's TitleProgress."""
    resumable = valid and not complete and position >= min_position
    return SimpleNamespace(
        position_s=position,
        duration_s=3000.0,
        is_valid_play=valid,
        is_complete=complete,
        valid_play_count=int(valid),
        started_at=at - timedelta(seconds=position),
        last_watched_at=at,
        resume_position_s=position if resumable else None,
        resume_watched_at=at if resumable else None,
    )


def by_category(segments: list[dict]) -> dict[str, dict]:
    return {s["category"]: s for s in segments}


def test_segment_thresholds_map_distinct_titles_like_the_mart():
    thresholds = {"fan": 6, "hardcore_fan": 50}
    assert [profile.segment_for(n, thresholds) for n in (0, 5, 6, 49, 50, 80)] == [
        "casual",
        "casual",
        "fan",
        "fan",
        "hardcore_fan",
        "hardcore_fan",
    ]


def test_a_sixth_distinct_valid_title_makes_a_fan_now(bundle):
    assert bundle.thresholds == {"fan": 6, "hardcore_fan": 50}
    before = by_category(profile.merge_segments(bundle, "u_five", []))
    assert before["drama"]["segment"] == "casual" and before["drama"]["titles_watched"] == 5
    drama = by_category(profile.merge_segments(bundle, "u_five", [DRAMA[5]]))["drama"]
    assert drama["segment"] == "fan" and drama["is_fan"]
    assert drama["titles_watched"] == 6 and drama["live_titles_watched"] == 1
    assert drama["batch_segment"] == "casual" and drama["batch_titles_watched"] == 5


def test_a_live_play_of_a_title_already_counted_counts_once(bundle):
    # t_d03 is in the batch (twice there too), t_d07's batch play was not valid,
    # a title the bundle does not know has no category
    segments = by_category(profile.merge_segments(bundle, "u_five", [DRAMA[2], "t_new"]))
    assert segments["drama"]["segment"] == "casual"
    assert segments["drama"]["titles_watched"] == 5
    assert segments["drama"]["live_titles_watched"] == 0
    assert set(segments) == {"drama", "comedy"}
    drama = by_category(profile.merge_segments(bundle, "u_five", [DRAMA[6]]))["drama"]
    assert drama["segment"] == "fan"


def test_the_thresholds_come_from_the_bundle(tmp_path):
    tiny_warehouse(tmp_path / "warehouse.duckdb", fan_min=3)
    bundles.publish_bundle(tmp_path / "warehouse.duckdb", tmp_path / "serving")
    lower = bundles.load_bundle(tmp_path / "serving")
    assert lower.thresholds["fan"] == 3
    segments = by_category(profile.merge_segments(lower, "u_five", []))
    assert segments["drama"]["segment"] == "fan" and segments["comedy"]["segment"] == "casual"
    comedy = by_category(profile.merge_segments(lower, "u_five", COMEDY))["comedy"]
    assert comedy["titles_watched"] == 2 and comedy["segment"] == "casual"


def test_lifecycle_moves_on_with_a_play_since_the_build(bundle):
    def stage(user, played_at):
        return profile.merge_lifecycle(bundle.lifecycle_of(user), played_at, bundle.as_of)

    assert stage("u_five", None)["stage"] == "at_risk"
    assert stage("u_five", BEFORE)["stage"] == "at_risk"
    now = stage("u_five", AFTER)
    assert now["stage"] == "active" and now["batch_stage"] == "at_risk" and now["is_live"]
    assert now["last_play_at"] == AFTER
    assert stage("u_churned", AFTER)["stage"] == "reactivated"
    assert stage("u_cancelled", AFTER)["stage"] == "churned"
    assert stage("u_new", AFTER)["stage"] == "new"
    unknown = profile.merge_lifecycle(None, AFTER, bundle.as_of)
    assert unknown["stage"] == "new" and unknown["batch_stage"] is None


def test_continue_watching_takes_newer_live_progress(bundle):
    batch = bundle.continue_watching.rows("u_five")
    assert [r["title_id"] for r in batch] == [DRAMA[4], COMEDY[0]]

    def merged(live):
        return profile.merge_continue_watching(batch, live, bundle.titles)

    assert [(e["title_id"], e["source"]) for e in merged({})] == [
        (DRAMA[4], "batch"),
        (COMEDY[0], "batch"),
    ]
    out = merged(
        {
            DRAMA[4]: progress(900, AFTER),  # further on: live wins
            COMEDY[0]: progress(2900, AFTER, complete=True),  # finished: drops out
            DRAMA[6]: progress(120, AFTER + timedelta(minutes=5)),  # new, most recent
            DRAMA[7]: progress(40, AFTER),  # valid but before 60 s: not listed
            COMEDY[1]: progress(20, AFTER, valid=False),  # not a valid play
            UNAVAILABLE: progress(500, AFTER),  # not available
        }
    )
    assert [(e["title_id"], e["continue_rank"], e["source"]) for e in out] == [
        (DRAMA[6], 1, "live"),
        (DRAMA[4], 2, "live"),
    ]
    assert out[1]["resume_position_s"] == 900 and out[1]["remaining_s"] == 2100
    assert out[1]["resume_pct"] == pytest.approx(0.3)
    # live progress older than the batch entry leaves it as it was
    stale = merged({DRAMA[4]: progress(100, BEFORE - timedelta(days=30))})
    assert stale[0]["resume_position_s"] == 600 and stale[0]["source"] == "batch"
    # a newer valid play that stopped before 60 s: the latest valid play decides
    assert [e["title_id"] for e in merged({DRAMA[4]: progress(45, AFTER)})] == [COMEDY[0]]


def test_build_profile_unknown_deleted_and_live_only_users(bundle):
    assert profile.build_profile(bundle, "u_nobody", None) is None
    assert profile.build_profile(bundle, "u_deleted", None) is None
    view = SimpleNamespace(progress={DRAMA[0]: progress(200, AFTER)})
    fresh = profile.build_profile(bundle, "u_nobody", view)
    assert fresh["lifecycle"]["stage"] == "new" and fresh["has_live_activity"]
    assert by_category(fresh["segments"])["drama"]["titles_watched"] == 1
    assert fresh["highest_segment"] == "casual"
    assert [e["title_id"] for e in fresh["continue_watching"]] == [DRAMA[0]]
    five = profile.build_profile(
        bundle, "u_five", SimpleNamespace(progress={DRAMA[5]: progress(200, AFTER)})
    )
    assert five["fan_categories"] == ["drama"] and five["highest_segment"] == "fan"
    assert five["lifecycle"]["stage"] == "active"
    assert five["bundle_version"] == bundle.version
    assert profile.Profile.model_validate(five).segments[0].category == "comedy"


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def play(user: str, title: str, start: datetime, seconds: int) -> list[dict]:
    """One playback: play_start, a heartbeat a minute, stop after ``seconds`` of playing."""
    playback = f"pb_{user}_{title}_{start:%H%M%S}"
    marks = [("play_start", 0), *[("heartbeat", s) for s in range(60, seconds, 60)]]
    marks.append(("stop", seconds))

    def at(offset: int) -> str:
        return (start + timedelta(seconds=offset)).isoformat(timespec="milliseconds")

    return [
        make_event(
            event_type=kind,
            user_id=user,
            playback_id=playback,
            title_id=title,
            position_s=float(offset),
            duration_s=3000.0,
            occurred_at=at(offset).replace("+00:00", "Z"),
            received_at=at(offset + 1).replace("+00:00", "Z"),
            properties=None,
        )
        for kind, offset in marks
    ]


def test_the_live_state_view_merges_into_the_profile(bundle):
    from ottp.realtime.state import MemoryState

    live = MemoryState()
    # a 20 s play of a new title is not valid; the sixth title played 2 min is
    live.apply(play("u_five", DRAMA[7], AFTER, 20))
    assert not profile.build_profile(bundle, "u_five", live.view("u_five"))["fan_categories"]
    changes = live.apply(play("u_five", DRAMA[5], AFTER + timedelta(minutes=5), 120))
    assert "valid_play" in {c.kind for c in changes}
    now = profile.build_profile(bundle, "u_five", live.view("u_five"))
    assert now["fan_categories"] == ["drama"]
    assert by_category(now["segments"])["drama"]["titles_watched"] == 6
    assert now["lifecycle"]["stage"] == "active"
    assert [e["title_id"] for e in now["continue_watching"]][:1] == [DRAMA[5]]


def test_over_http_a_posted_play_that_makes_a_fan_shows_in_the_next_profile(
    realtime_server, bundle_dir, bundle
):
    server = realtime_server(env={"OTTP_BUNDLE_DIR": str(bundle_dir)})
    url = f"{server.url}/v1/users/u_five/profile"
    assert server.session.get(url, timeout=10).status_code == 401
    assert server.session.get(url, headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401
    health = server.session.get(f"{server.url}/health", timeout=10).json()
    assert health["bundle_version"] == bundle.version
    before = server.session.get(url, headers=server.headers(), timeout=10)
    assert before.status_code == 200, before.text
    drama = by_category(before.json()["segments"])["drama"]
    assert drama["segment"] == "casual" and drama["titles_watched"] == 5
    assert before.json()["lifecycle"]["stage"] == "at_risk"

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    posted = server.post_events(play("u_five", DRAMA[5], start, 120))
    assert posted.status_code == 200, posted.text
    after = server.session.get(
        url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=10
    )
    assert after.status_code == 200, after.text
    body = after.json()
    assert body["bundle_version"] == bundle.version
    assert body["fan_categories"] == ["drama"] and body["highest_segment"] == "fan"
    drama = by_category(body["segments"])["drama"]
    assert drama["titles_watched"] == 6 and drama["live_titles_watched"] == 1
    assert body["lifecycle"]["stage"] == "active" and body["lifecycle"]["batch_stage"] == "at_risk"
    assert body["continue_watching"][0]["title_id"] == DRAMA[5]
    assert body["continue_watching"][0]["source"] == "live"

    unknown = server.session.get(
        f"{server.url}/v1/users/u_nobody/profile", headers=server.headers(), timeout=10
    )
    assert unknown.status_code == 404
    # an anonymous visitor's live state is no user's profile
    visit = make_event(user_id=None, device_id="d_anon", title_id=DRAMA[0])
    assert server.post_events([visit]).status_code == 200
    device = server.session.get(
        f"{server.url}/v1/users/device:d_anon/profile", headers=server.headers(), timeout=10
    )
    assert device.status_code == 404
    too_long = server.session.get(
        f"{server.url}/v1/users/{'u' * 300}/profile", headers=server.headers(), timeout=10
    )
    assert too_long.status_code == 422
    assert "u_five" not in server.log()


def test_over_http_a_new_bundle_is_picked_up_without_a_failed_request(
    realtime_server, bundle_dir, tmp_path
):
    warehouse = bundle_dir.parent / "warehouse.duckdb"
    serving = tmp_path / "serving"
    first = bundles.publish_bundle(warehouse, serving)
    server = realtime_server(env={"OTTP_BUNDLE_DIR": str(serving), "OTTP_BUNDLE_POLL_SECONDS": "1"})
    url = f"{server.url}/v1/users/u_five/profile"
    statuses: list[int] = []
    versions: list[str] = []
    done = threading.Event()

    def ask() -> None:
        with requests.Session() as session:
            while not done.is_set():
                r = session.get(url, headers=server.headers(), timeout=10)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["bundle_version"])

    reader = threading.Thread(target=ask)
    reader.start()
    try:
        published = [first.version]
        for _ in range(2):
            published.append(bundles.publish_bundle(warehouse, serving).version)
            assert wait_for(lambda: versions and versions[-1] == published[-1], 15), versions[-1:]
    finally:
        done.set()
        reader.join(timeout=30)
    assert statuses and set(statuses) == {200}
    assert set(versions) == set(published)
    # versions only move forward
    assert versions == sorted(versions)
