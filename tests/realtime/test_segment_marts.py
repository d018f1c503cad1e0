"""From tracking SDKs to the marts: Segment's Python and Node SDKs, ``ottp serve``, load, dbt.

Segment's Python SDK (``segment-analytics-python``) sends a viewer's first
session (five drama titles played to the end) and another viewer's five
titles; Segment's Node SDK (``@segment/analytics-node``) sends the first
viewer's next session on another device: a sixth drama title and a like. After
``ottp load`` and one dbt build (the marts and the CRM trigger ledger), the
marts hold the two sessions with their durations, six valid complete plays,
the viewer a drama fan (more than 5 distinct titles), and ``became_fan``
fired at the moment the Node SDK's play crossed the threshold; the other viewer
(five titles) is no fan and has no trigger. Each SDK also identifies the
viewer's device (the TV after an anonymous page view): ``device_users`` links
both devices to the viewer, the other viewer's device by its plays only, and
the TV's page before the identify stays an anonymous session. Skipped without
node or the Node SDKs (``make sdks``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from segment.analytics import Client

from ottp import privacy
from ottp.ingest import identities, load
from tests.conftest import make_title, run_dbt_in_folder, write_landing

NODE_CLIENT = Path(__file__).with_name("segment_node")
FAN, FAN_WEB, FAN_TV = "u_000101", "d_0000101", "d_0000102"
FIVE, FIVE_WEB = "u_000202", "d_0000202"
DRAMA = [f"t_d{i:04d}" for i in range(1, 8)]
TITLE_S = 180  # each title plays 3 minutes, start to completion
GAP_S = 20  # between two titles of a session
IDENTIFY_BEFORE = timedelta(seconds=30)  # the sign-in before a session
# The recommender's tables the CRM contacts read (written by ml/ outside dbt): empty here.
EMPTY_ML = """
create schema if not exists ml;
create table ml.recommendations (user_id varchar, rank integer, title_id varchar, score float,
    reason varchar, reason_title_id varchar, source varchar, model_version varchar);
create table ml.user_taste_clusters (user_id varchar, cluster_id integer, cluster_name varchar);
create table ml.churn_risk (user_id varchar, churn_risk double, risk_band varchar);
"""

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_CLIENT / "node_modules").is_dir(),
    reason="needs node and `npm ci --prefix tests/realtime/segment_node` (make sdks)",
)


def call(kind: str, user: str | None, device: str, platform: str, at: datetime, **fields) -> dict:
    """One tracking call in Segment's shape (both SDKs are fed from it); no user: anonymous."""
    return {
        "type": kind,
        **({"userId": user} if user else {}),
        "anonymousId": device,
        "timestamp": at.isoformat(),
        "context": {"device": {"type": platform}},
        **fields,
    }


def playback(user: str, device: str, platform: str, title: str, at: datetime) -> list[dict]:
    """A title played to the end: started, a heartbeat a minute, completed."""
    video = {"session_id": f"{user}-{title}", "content_asset_id": title, "total_length": TITLE_S}
    return [
        call(
            "track",
            user,
            device,
            platform,
            at + timedelta(seconds=position),
            event=event,
            properties={**video, "position": position},
        )
        for event, position in [
            ("Video Playback Started", 0),
            ("Video Content Playing", 60),
            ("Video Content Playing", 120),
            ("Video Playback Completed", TITLE_S),
        ]
    ]


def binge(user: str, device: str, titles: list[str], start: datetime) -> list[dict]:
    """A session on the web: the home page, then the titles one after the other."""
    calls = [call("page", user, device, "web", start, name="Home")]
    for i, title in enumerate(titles):
        at = start + timedelta(seconds=10 + i * (TITLE_S + GAP_S))
        calls += playback(user, device, "web", title, at)
    return calls


def send_python(server, calls: list[dict]) -> None:
    errors: list = []
    client = Client(
        server.api_key,
        host=server.url,
        upload_interval=0.05,
        max_retries=1,
        on_error=lambda exc, batch: errors.append(exc),
    )
    for c in calls:
        common = dict(
            user_id=c.get("userId"),
            anonymous_id=c["anonymousId"],
            context=c["context"],
            timestamp=datetime.fromisoformat(c["timestamp"]),
        )
        if c["type"] == "page":
            client.page(name=c["name"], **common)
        elif c["type"] == "identify":
            client.identify(traits=c["traits"], **common)
        else:
            client.track(event=c["event"], properties=c["properties"], **common)
    client.flush()
    client.shutdown()
    assert errors == []


def send_node(server, calls: list[dict]) -> None:
    args = {"sdk": "segment", "host": server.url, "writeKey": server.api_key, "calls": calls}
    done = subprocess.run(
        ["node", str(NODE_CLIENT / "send_calls.mjs"), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@dataclass
class Built:
    warehouse: Path
    first_start: datetime  # the fan's first session (Python SDK)
    second_start: datetime  # the fan's second session (Node SDK)
    rejected: int


@pytest.fixture(scope="module")
def built(realtime_server_module, tmp_path_factory, dbt_saved_parse) -> Built:
    server = realtime_server_module()
    now = datetime.now(UTC).replace(microsecond=0)
    first, second = now - timedelta(hours=26), now - timedelta(hours=2)
    send_python(
        server,
        [call("identify", FAN, FAN_WEB, "web", first - IDENTIFY_BEFORE, traits={"plan": "basic"})]
        + binge(FAN, FAN_WEB, DRAMA[:5], first)
        + binge(FIVE, FIVE_WEB, DRAMA[:5], first + timedelta(minutes=5)),
    )
    sixth = second + timedelta(seconds=10)
    send_node(
        server,
        [
            # on the TV: a page before the viewer signs in (anonymous), then the identify
            call("page", None, FAN_TV, "tv", second - 2 * IDENTIFY_BEFORE, name="Home"),
            call("identify", FAN, FAN_TV, "tv", second - IDENTIFY_BEFORE, traits={}),
            call(
                "page",
                FAN,
                FAN_TV,
                "tv",
                second,
                name="Title",
                properties={"content_asset_id": DRAMA[5]},
            ),
            *playback(FAN, FAN_TV, "tv", DRAMA[5], sixth),
            call(
                "track",
                FAN,
                FAN_TV,
                "tv",
                sixth + timedelta(seconds=TITLE_S + 10),
                event="Title Liked",
                properties={"content_asset_id": DRAMA[5]},
            ),
        ],
    )
    server.stop()  # closes the open landing file
    titles = [make_title(title_id=t, name=f"Drama {t}", duration_s=TITLE_S) for t in DRAMA]
    write_landing(server.landing_dir, titles, now.date(), "catalog", "titles.ndjson.gz")

    root = tmp_path_factory.mktemp("segment_marts")
    warehouse = root / "warehouse.duckdb"
    report = load.load_landing(warehouse, server.landing_dir)
    identified = identities.load_identities(warehouse, server.landing_dir)
    assert (identified.loaded, identified.rejected) == (2, 0)
    privacy.pseudonymise_deleted_users(warehouse)  # the pipeline's step: raw.deleted_users
    with duckdb.connect(str(warehouse)) as con:
        con.execute(EMPTY_ML)
    # in the warehouse's folder, from the session's saved parse (tests/conftest.py)
    run_dbt_in_folder(
        ["build", "--select", "+crm_trigger_log", "+sessions", "+device_users"],
        root,
        dbt_saved_parse(root / "target"),
        DBT_INDIRECT_SELECTION="cautious",  # no test of an export left out of the build
    )
    return Built(warehouse, first, second, report.rejected)


def rows(built: Built, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_every_call_loads_with_no_rejection(built):
    assert built.rejected == 0
    counts = rows(built, "select user_id, count(*) from raw.events group by 1 order by 1")
    # fan: 2 pages, 6 titles x 4 player events, a like; the other: a page, 5 x 4; the
    # TV's page before the sign-in
    assert counts == [(FAN, 2 + 6 * 4 + 1), (FIVE, 1 + 5 * 4), (None, 1)]


def test_the_fans_two_sessions_with_their_durations(built):
    sessions = rows(
        built,
        "select device_id, platform, started_at, duration_s, play_start_count"
        " from marts.sessions where user_id = ? order by started_at",
        [FAN],
    )
    assert [(s[0], s[1], s[4]) for s in sessions] == [(FAN_WEB, "web", 5), (FAN_TV, "tv", 1)]
    first_s = 10 + 4 * (TITLE_S + GAP_S) + TITLE_S  # home page to the fifth completion
    second_s = 10 + TITLE_S + 10  # title page, the play, the like
    for (_, _, started, duration, _), start, expected in zip(
        sessions, (built.first_start, built.second_start), (first_s, second_s), strict=True
    ):
        assert abs(started.replace(tzinfo=UTC) - start) < timedelta(seconds=5)
        assert duration == pytest.approx(expected, abs=2)


def test_six_valid_complete_plays(built):
    plays = rows(
        built,
        "select title_id, platform, is_valid_play, is_complete, played_s"
        " from marts.plays where user_id = ? order by started_at",
        [FAN],
    )
    assert [(p[0], p[1]) for p in plays] == [(t, "web") for t in DRAMA[:5]] + [(DRAMA[5], "tv")]
    assert all(p[2] and p[3] for p in plays)
    assert [p[4] for p in plays] == pytest.approx([TITLE_S] * 6, abs=2)


def test_the_sixth_title_makes_a_fan_and_fires_became_fan_then(built):
    segments = dict(
        rows(
            built,
            "select user_id, titles_watched from marts.user_category_segments"
            " where category = 'drama' and is_fan",
        )
    )
    assert segments == {FAN: 6}  # the other viewer's five titles make no fan
    assert (
        rows(
            built,
            "select count(*) from marts.user_category_segments where user_id = ?"
            " and category = 'drama'",
            [FIVE],
        )[0][0]
        == 1
    )
    fired = rows(
        built,
        "select user_id, subject_id, occurred_at from exports.crm_trigger_log"
        " where scenario = 'became_fan'",
    )
    assert [(f[0], f[1]) for f in fired] == [(FAN, "drama")]
    sixth_start = built.second_start + timedelta(seconds=10)  # the Node SDK's play
    assert abs(fired[0][2].replace(tzinfo=UTC) - sixth_start) < timedelta(seconds=5)
    liked = rows(
        built,
        "select title_id from marts.user_title_interests where user_id = ? and is_liked",
        [FAN],
    )
    assert liked == [(DRAMA[5],)]


def test_identify_links_devices_and_leaves_earlier_anonymous_activity_anonymous(built):
    linked = rows(
        built,
        "select device_id, user_id, identify_count, play_count,"
        " first_identified_at, first_seen_at from marts.device_users order by 1",
    )
    assert [r[:4] for r in linked] == [
        (FAN_WEB, FAN, 1, 5),
        (FAN_TV, FAN, 1, 1),
        (FIVE_WEB, FIVE, 0, 5),
    ]
    expected = [built.first_start - IDENTIFY_BEFORE, built.second_start - IDENTIFY_BEFORE]
    for row, at in zip(linked[:2], expected, strict=True):
        assert abs(row[4].replace(tzinfo=UTC) - at) < timedelta(seconds=5)
        assert row[5] == row[4]  # identified before the first play
    assert linked[2][4] is None  # linked by its plays only
    # the TV's page before the identify stays an anonymous session of the device
    anonymous = rows(
        built,
        "select device_id, is_anonymous, page_view_count from marts.sessions where user_id is null",
    )
    assert anonymous == [(FAN_TV, True, 1)]
