"""Live recommendations: the live state's view turned into session signals (a plain
function), then over HTTP against a real server on a bundle published from a
synthetic warehouse and a promoted model: a play, a dislike, rails shown without a
click and an anonymous device's clicks change the next answer; a newly published
bundle with a new model is picked up while requests run; auth, 404, 422, 503."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from benchmarks.bench_recommend import promote_synthetic_model
from ottp import config
from ottp.realtime import bundle as bundles
from ottp.realtime import recommend_api
from ottp.realtime.rerank import IMPRESSION_LIMIT, REASONS
from ottp.realtime.state import MemoryState
from tests.conftest import make_event

USER = "u_0000001"
# the synthetic catalog: t_00000..t_00011 are episodes in series of five
EPISODE, NEXT_EPISODE = "t_00005", "t_00006"


def _at(offset_s: float = 0.0) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=5) + timedelta(seconds=offset_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(event_type: str, actor: str, title: str | None = None, offset_s: float = 0.0, **kw):
    """An event of now (minus five minutes); ``actor`` a user id, or ``device:<id>``."""
    anonymous = actor.startswith("device:")
    return make_event(
        event_type=event_type,
        user_id=None if anonymous else actor,
        device_id=actor.removeprefix("device:") if anonymous else f"d_{actor}",
        title_id=title,
        occurred_at=_at(offset_s),
        received_at=_at(offset_s),
        **{"properties": None, **kw},
    )


def playing(user: str, title: str, offset_s: float = 0.0) -> list[dict]:
    """A playback under way: play_start and a heartbeat a minute in."""
    player = {"playback_id": f"pb_{user}_{title}", "duration_s": 3000.0}
    return [
        event("play_start", user, title, offset_s, position_s=0.0, **player),
        event("heartbeat", user, title, offset_s + 60, position_s=60.0, **player),
    ]


def rail(actor: str, titles: list[str], offset_s: float) -> dict:
    return event(
        "rail_impression", actor, None, offset_s, properties={"rail": "x", "title_ids": titles}
    )


def test_session_signals_come_from_the_live_view():
    live = MemoryState()
    live.apply(
        [
            rail(USER, ["t_00020", "t_00021", "t_00022"], 0),
            rail(USER, ["t_00020", "t_00021"], 10),
            event("title_click", USER, "t_00021", 20),
            *playing(USER, "t_00021", 30),
            event("like", USER, "t_00030", 200),
            event("dislike", USER, "t_00031", 210),
            event("rating", USER, "t_00032", 220, properties={"rating": 2}),
        ]
    )
    signals = recommend_api.session_signals(live.view(USER), USER)
    assert signals.user_id == USER and signals.current_title == "t_00021"
    assert [(i.kind, i.title_id) for i in signals.interactions] == [
        ("click", "t_00021"),
        ("play", "t_00021"),
        ("like", "t_00030"),
        ("dislike", "t_00031"),
        ("rating", "t_00032"),
    ]
    assert signals.interactions[-1].value == 2.0
    # shown and never taken up: counted; clicked after it was shown: not
    assert dict(signals.impressions) == {"t_00020": 2, "t_00022": 1}
    assert signals.liked == {"t_00030"} and signals.disliked == {"t_00031"}
    assert dict(signals.progress) == {"t_00021": pytest.approx(60 / 3000)}
    assert signals.completed == frozenset()
    assert recommend_api.session_signals(None, None).interactions == ()


def test_the_bundle_lists_its_serving_model_with_checksums_and_a_damaged_one_is_refused(
    recommend_warehouse, tmp_path
):
    folder = recommend_warehouse.bundle_dir / bundles.BUNDLES / recommend_warehouse.bundle_version
    entry = json.loads((folder / bundles.MANIFEST).read_text())["model"]
    assert entry["version"] == recommend_warehouse.model_version
    assert set(entry["files"]) == {"serving_model.npz", "serving_model.json"}
    for name, file in entry["files"].items():
        data = (folder / entry["folder"] / name).read_bytes()
        assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["bytes"] == len(data)
    loaded = bundles.load_bundle(recommend_warehouse.bundle_dir)
    assert loaded.model_version == recommend_warehouse.model_version
    assert loaded.model.user_index and loaded.recommender is not None

    serving = tmp_path / "serving"
    models = recommend_warehouse.models_dir
    good = bundles.publish_bundle(recommend_warehouse.warehouse, serving, models_dir=models)
    rt = dataclasses.replace(config.realtime_settings(), bundle_dir=serving)
    watcher = bundles.BundleWatcher(rt)
    assert watcher.refresh() and watcher.current.model_version == good.model_version
    damaged = bundles.publish_bundle(recommend_warehouse.warehouse, serving, models_dir=models)
    npz = damaged.path / bundles.MODEL_DIR / "serving_model.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum differs"):
        bundles.load_bundle(serving)
    # the watcher keeps serving the version it holds
    assert watcher.refresh() is False and watcher.version == good.version


def _get(server, path: str, **params):
    return server.session.get(
        f"{server.url}{path}", params=params, headers=server.headers(), timeout=10
    )


def _titles(body: dict) -> list[str]:
    return [item["title_id"] for item in body["items"]]


@pytest.fixture(scope="module")
def server(realtime_server_module, recommend_warehouse):
    return realtime_server_module(env={"OTTP_BUNDLE_DIR": str(recommend_warehouse.bundle_dir)})


def test_a_play_changes_the_next_answer_and_every_item_has_a_reason(server, recommend_warehouse):
    before = _get(server, f"/v1/users/{USER}/recommendations", k=10)
    assert before.status_code == 200, before.text
    body = before.json()
    assert body["actor_id"] == USER and len(body["items"]) == 10
    assert body["model_version"] == recommend_warehouse.model_version
    assert body["bundle_version"] == recommend_warehouse.bundle_version
    generated = datetime.fromisoformat(body["generated_at"])
    assert abs(datetime.now(UTC) - generated) < timedelta(minutes=1)
    for item in body["items"]:
        assert item["reason_code"] in REASONS and item["reason"]
        assert item["title_name"] == "Title " + str(int(item["title_id"][2:]))
    assert EPISODE not in _titles(body)

    assert server.post_events(playing(USER, EPISODE)).status_code == 200
    # intake updates the live state before it answers: the next answer follows the play
    after = _get(server, f"/v1/users/{USER}/recommendations", k=10).json()
    assert _titles(after) != _titles(body)
    assert EPISODE not in _titles(after)  # playing now
    by_title = {item["title_id"]: item for item in after["items"]}
    assert by_title[NEXT_EPISODE]["reason_code"] == "next_episode"
    assert _titles(after)[0] == NEXT_EPISODE
    assert USER not in server.log()


def test_a_disliked_title_and_one_shown_without_a_click_are_filtered(server):
    user = "u_0000002"
    top = _titles(_get(server, f"/v1/users/{user}/recommendations", k=5).json())
    assert server.post_events([event("dislike", user, top[0])]).status_code == 200
    after = _titles(_get(server, f"/v1/users/{user}/recommendations", k=5).json())
    # filtered (the dislike also folds into the model's scores: the rest may move)
    assert top[0] not in after and len(after) == 5
    # the next title, shown on rails IMPRESSION_LIMIT times without a click
    shown = after[0]
    rails = [rail(user, [shown, "t_00059"], 10 * i) for i in range(IMPRESSION_LIMIT)]
    assert server.post_events(rails[:-1]).status_code == 200
    assert shown in _titles(_get(server, f"/v1/users/{user}/recommendations", k=5).json())
    assert server.post_events(rails[-1:]).status_code == 200
    assert shown not in _titles(_get(server, f"/v1/users/{user}/recommendations", k=5).json())


def test_an_anonymous_device_gets_trending_then_follows_its_session(server):
    path = "/v1/devices/d_visitor/recommendations"
    first = _get(server, path, k=10)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["actor_id"] == "device:d_visitor" and len(body["items"]) == 10
    assert {item["reason_code"] for item in body["items"]} == {"trending"}
    clicked = EPISODE
    clicks = [event("title_click", "device:d_visitor", clicked)]
    assert server.post_events(clicks).status_code == 200
    after = _get(server, path, k=10).json()
    assert clicked not in _titles(after) and _titles(after) != _titles(body)
    assert NEXT_EPISODE in _titles(after)
    # the device's session is not a user's: the user endpoint does not know it
    assert _get(server, "/v1/users/device:d_visitor/recommendations").status_code == 404


def test_auth_unknown_and_deleted_users_and_k_bounds(server, recommend_warehouse):
    path = f"/v1/users/{USER}/recommendations"
    for route in (path, "/v1/devices/d_1/recommendations"):
        assert server.session.get(server.url + route, timeout=10).status_code == 401
        wrong = server.session.get(server.url + route, headers={"X-API-Key": "no"}, timeout=10)
        assert wrong.status_code == 401
    bearer = {"Authorization": f"Bearer {server.api_key}"}
    assert server.session.get(server.url + path, headers=bearer, timeout=10).status_code == 200
    assert _get(server, "/v1/users/u_nobody/recommendations").status_code == 404
    deleted = _get(server, f"/v1/users/{recommend_warehouse.deleted_user}/recommendations")
    assert deleted.status_code == 404
    for k in (0, 101, -1, "ten"):
        assert _get(server, path, k=k).status_code == 422, k
        assert _get(server, "/v1/devices/d_1/recommendations", k=k).status_code == 422, k
    assert len(_get(server, path, k=1).json()["items"]) == 1
    assert len(_get(server, path, k=100).json()["items"]) <= 100
    assert _get(server, "/v1/users/" + "u" * 201 + "/recommendations").status_code == 422


def test_the_plain_path_answers_as_the_declared_handler(server):
    """A plain request (X-API-Key) is answered without FastAPI's parameter machinery; a
    Bearer key, or a k in another spelling, goes through FastAPI's handler. Same answers."""
    bearer = {"Authorization": f"Bearer {server.api_key}"}
    for path in (f"/v1/users/{USER}/recommendations", "/v1/devices/d_plain/recommendations"):
        for k in (None, 1, 7, 100):
            params = {} if k is None else {"k": k}
            plain = _get(server, path, **params)
            declared = server.session.get(
                server.url + path, params=params, headers=bearer, timeout=10
            )
            assert plain.status_code == declared.status_code == 200
            a, b = plain.json(), declared.json()
            assert a.pop("generated_at") and b.pop("generated_at")
            assert a == b
            assert 0 < len(a["items"]) <= (k or recommend_api.DEFAULT_K)
        # spellings FastAPI coerces or refuses: answered by FastAPI, as before
        for k in ("07", "+7", " 7", "7.0", "1e1", "٧", "101", "0"):
            answer = _get(server, path, k=k)
            declared = server.session.get(
                server.url + path, params={"k": k}, headers=bearer, timeout=10
            )
            assert answer.status_code == declared.status_code, k
        repeated = server.session.get(
            f"{server.url}{path}?k=3&k=5", headers=server.headers(), timeout=10
        )
        assert repeated.status_code == 200 and len(repeated.json()["items"]) == 5


def test_plain_arguments_leave_every_other_request_to_fastapi():
    from types import SimpleNamespace
    from urllib.parse import urlencode

    def request(key: str | None, query: dict | str = "", expected: str | None = "key", **path):
        headers = [] if key is None else [(b"x-api-key", key.encode())]
        query = query if isinstance(query, str) else urlencode(query, doseq=True)
        app = SimpleNamespace(state=SimpleNamespace(api_key=expected))
        scope = {"type": "http", "headers": headers, "query_string": query.encode(),
                 "path_params": path, "app": app}  # fmt: skip
        return recommend_api._plain_arguments(recommend_api.Request(scope))

    assert request("key", user_id="u_1") == {"user_id": "u_1", "k": 10}
    assert request("key", {"k": 25}, device_id="d") == {"device_id": "d", "k": 25}
    assert request(None, {"k": 100}, expected=None, user_id="u") == {"user_id": "u", "k": 100}
    for key in (None, "", "wrong", "key "):
        assert request(key, user_id="u_1") is None, key
    for k in ("0", "07", "101", "+7", "-1", " 7", "7.0", "ten", "٧", "", "1000"):
        assert request("key", {"k": k}, user_id="u_1") is None, k
    assert request("key", "k=3&k=5", user_id="u_1") is None
    assert request("key", user_id="") is None
    assert request("key", user_id="u" * 201) is None
    assert request("key", user_id="u" * 200) == {"user_id": "u" * 200, "k": 10}


# Redis for the tests below: its own database on the local server, flushed before and after
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def redis_db():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_the_redis_view_awaited_in_the_loop_is_the_threads_view(redis_db):
    import asyncio

    from ottp.realtime.redis_state import ResilientState

    state = ResilientState(REDIS_URL)
    try:
        state.apply([*playing(USER, EPISODE), event("like", USER, "t_00030", 90)])
        assert state.backend == "redis"

        async def views(actor: str):
            return await state.view_async(actor), await state.view_async(actor)

        for actor in (USER, "u_nobody"):
            assert asyncio.run(views(actor)) == (state.view(actor), state.view(actor))
        assert asyncio.run(views(USER))[0].current_title == EPISODE
        # a read that fails in the loop is made again in a thread (which falls back as
        # view() does): here the loop's client points at a closed port
        state._async_client = None
        state.url = "redis://127.0.0.1:1/14"
        assert asyncio.run(views(USER))[0] == state.view(USER)
    finally:
        state.close()


def test_two_workers_share_the_redis_state_and_both_serve(
    realtime_server, recommend_warehouse, redis_db
):
    """``ottp serve --workers 2`` on Redis: whichever worker a connection reaches, a play
    taken in by one shows in the next answer; each worker loaded the bundle."""
    server = realtime_server(
        env={"OTTP_BUNDLE_DIR": str(recommend_warehouse.bundle_dir), "OTTP_REDIS_URL": REDIS_URL},
        args=("--workers", "2"),
    )
    _await(lambda: server.log().count("Application startup complete") >= 2, timeout_s=120)
    assert server.log().count("serving bundle") >= 2
    user, path = "u_0000004", "/v1/users/u_0000004/recommendations"
    assert server.post_events(playing(user, EPISODE)).status_code == 200
    for _ in range(20):  # a new connection each time: the kernel picks the worker
        answer = requests.get(server.url + path, headers=server.headers(), timeout=10)
        assert answer.status_code == 200
        assert _titles(answer.json())[0] == NEXT_EPISODE and EPISODE not in _titles(answer.json())


def _await(condition, timeout_s: float = 20.0):
    """Call ``condition`` until it returns a true value (each call is a request)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
    raise AssertionError("condition not met in time")


def test_503_before_a_bundle_and_with_a_bundle_without_a_model(
    realtime_server, recommend_warehouse, tmp_path
):
    serving = tmp_path / "serving"
    server = realtime_server(env={"OTTP_BUNDLE_DIR": str(serving), "OTTP_BUNDLE_POLL_SECONDS": "1"})
    for route in (f"/v1/users/{USER}/recommendations", "/v1/devices/d_1/recommendations"):
        answer = _get(server, route)
        assert answer.status_code == 503 and "no serving bundle yet" in answer.text
    # a registry without a promoted model: a bundle without a serving model, and why
    info = bundles.publish_bundle(
        recommend_warehouse.warehouse, serving, models_dir=tmp_path / "no-models"
    )
    assert info.model_version is None and "no promoted model" in info.model_reason

    def no_model() -> str | None:
        answer = _get(server, f"/v1/users/{USER}/recommendations")
        return answer.text if answer.status_code == 503 and info.version in answer.text else None

    assert "has no serving model: no promoted model" in _await(no_model)


def test_a_new_bundle_with_a_new_model_is_picked_up_while_requests_run(
    realtime_server, recommend_warehouse, tmp_path
):
    models, serving = tmp_path / "models", tmp_path / "serving"
    first_model = promote_synthetic_model(recommend_warehouse.warehouse, models, seed=1)
    first = bundles.publish_bundle(recommend_warehouse.warehouse, serving, models_dir=models)
    server = realtime_server(env={"OTTP_BUNDLE_DIR": str(serving), "OTTP_BUNDLE_POLL_SECONDS": "1"})
    seen: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            answer = _get(server, f"/v1/users/{USER}/recommendations", k=10)
            body = answer.json()
            seen.append((answer.status_code, body.get("model_version"), body.get("bundle_version")))

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for t in askers:
        t.start()
    try:
        _await(lambda: len(seen) >= 5)
        second_model = promote_synthetic_model(recommend_warehouse.warehouse, models, seed=2)
        second = bundles.publish_bundle(recommend_warehouse.warehouse, serving, models_dir=models)
        assert second.model_version == second_model != first_model
        _await(lambda: seen[-1][1:] == (second_model, second.version))
        count = len(seen)
        _await(lambda: len(seen) >= count + 5)
    finally:
        stop.set()
        for t in askers:
            t.join(timeout=30)
    assert {code for code, _, _ in seen} == {200}
    # each answer used one bundle whole: its model and its version, never a mix
    assert {(model, version) for _, model, version in seen} == {
        (first_model, first.version),
        (second_model, second.version),
    }
    switched = [i for i, (_, model, _) in enumerate(seen) if model == second_model]
    assert all(model == second_model for _, model, _ in seen[switched[0] + 2 :])


def test_a_playback_sent_by_the_segment_sdk_changes_the_recommendations(server):
    # The tracker's own client, unchanged: its Video Spec call reaches the live state
    # through the same intake, and the next answer follows it.
    from segment.analytics import Client

    from tests.realtime.test_segment_api import CONTEXT

    user = "u_0000003"
    path = f"/v1/users/{user}/recommendations"
    before = _titles(_get(server, path, k=10).json())
    errors: list = []
    client = Client(
        server.api_key, host=server.url, upload_interval=0.05, max_retries=1,
        on_error=lambda exc, batch: errors.append(exc),
    )  # fmt: skip
    started = datetime.now(UTC) - timedelta(minutes=5)
    playback = {"session_id": f"pb_{user}", "content_asset_id": EPISODE, "total_length": 3000}
    client.track(user, "Video Playback Started", {**playback, "position": 0}, {**CONTEXT},
                 timestamp=started, anonymous_id=f"d_{user}")  # fmt: skip
    client.track(user, "Video Content Playing", {**playback, "position": 60}, {**CONTEXT},
                 timestamp=started + timedelta(seconds=60), anonymous_id=f"d_{user}")  # fmt: skip
    client.flush()
    client.shutdown()
    assert errors == []
    after = _get(server, path, k=10).json()
    assert _titles(after) != before
    assert EPISODE not in _titles(after)  # playing now
    assert _titles(after)[0] == NEXT_EPISODE
    assert after["items"][0]["reason_code"] == "next_episode"
