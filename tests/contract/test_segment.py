"""The Segment/RudderStack mapping (ottp.contract.segment) as pure functions: no HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import duckdb
import pytest

from ottp.contract import rules, segment
from ottp.ingest import validate

RECEIVED = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
CONTEXT = {
    "device": {"type": "android"},
    "app": {"version": "5.12.1"},
    "location": {"country": "FR"},
}


def track(name: str, **properties) -> dict:
    return {
        "type": "track",
        "event": name,
        "messageId": str(uuid.uuid4()),
        "userId": "u_000042",
        "anonymousId": "d_0000042",
        "timestamp": "2026-12-07T09:00:00.000+00:00",
        "context": CONTEXT,
        "properties": properties,
    }


def player(name: str, position: float = 60, **extra) -> dict:
    props = {"session_id": "pb-1", "content_asset_id": "t_00007", "position": position,
             "total_length": 300, **extra}  # fmt: skip
    return track(name, **props)


def one(message: dict, **kwargs) -> segment.Outcome:
    return segment.map_messages([message], RECEIVED, **kwargs)[0]


def verdicts(events: list[dict]) -> list[validate.LineVerdict]:
    con = duckdb.connect()
    try:
        return validate.validate_event_lines(con, [json.dumps(e) for e in events])
    finally:
        con.close()


@pytest.mark.parametrize(
    "name, event_type",
    [
        ("Video Playback Started", "play_start"),
        ("Video Content Playing", "heartbeat"),
        ("Video Playback Paused", "pause"),
        ("Video Playback Resumed", "resume"),
        ("Video Content Completed", "complete"),
        ("Video Playback Completed", "complete"),
        ("Video Playback Exited", "stop"),
        ("Video Playback Interrupted", "stop"),
    ],
)
def test_the_video_spec_maps_onto_player_events_the_loader_accepts(name, event_type):
    outcome = one(player(name, livestream=False, video_player="html5", bitrate=None))
    event = outcome.event
    assert outcome.status == "mapped" and event["event_type"] == event_type
    assert (event["playback_id"], event["title_id"]) == ("pb-1", "t_00007")
    assert (event["position_s"], event["duration_s"]) == (60, 300)
    assert event["properties"] == {"livestream": False, "video_player": "html5", "bitrate": None}
    assert (event["platform"], event["app_version"], event["country"]) == (
        "android",
        "5.12.1",
        "FR",
    )
    assert verdicts([event]) == [validate.LineVerdict(event["event_id"], None, None)]


def test_a_seek_needs_its_from_position_and_is_never_guessed():
    sent = one(player("Video Playback Seek Completed", position=200, seek_from_position=90))
    assert (sent.event["from_position_s"], sent.event["position_s"]) == (90, 200)
    assert verdicts([sent.event])[0].reason_code is None
    # the Video Spec's Seek Completed alone has only the new position
    bare = one(player("Video Playback Seek Completed", position=200))
    assert "from_position_s" not in bare.event
    assert verdicts([bare.event])[0].reason == "missing_field: from_position_s"


def test_named_events_without_a_contract_event_are_skipped_and_unknown_ones_rejected():
    assert one(player("Video Playback Buffer Started")).status == "skipped"
    identify = {"type": "identify", "userId": "u_1", "anonymousId": "d_1", "messageId": "m"}
    skipped = one(identify)
    assert (skipped.status, skipped.reason_code) == ("skipped", "no_contract_event")
    unknown = one(track("Poster Hovered"))
    assert (unknown.status, unknown.reason_code) == ("rejected", "unmapped_event")
    assert unknown.reason == "unmapped_event: track event 'Poster Hovered' is not in the mapping"
    odd = one({**track("Title Liked"), "type": "telemetry"})
    assert odd.reason_code == "unmapped_event" and "'telemetry'" in odd.reason
    assert one(["not", "a", "message"]).reason_code == "not_an_object"
    for not_a_name in (["track"], {"track": 1}, 7):  # unhashable or not text: no call type
        bad = one({**track("Title Liked"), "type": not_a_name})
        assert (bad.status, bad.reason_code) == ("rejected", "unmapped_event")
        assert "call type missing" in bad.reason


def test_page_and_screen_calls_are_page_views_named_by_the_mapping():
    page = {
        **track("x"),
        "type": "page",
        "name": "Title",
        "properties": {"content_asset_id": "t_1"},
    }
    page.pop("event")
    event = one(page).event
    assert (event["event_type"], event["properties"], event["title_id"]) == (
        "page_view", {"page": "title"}, "t_1")  # fmt: skip
    screen = {**page, "type": "screen", "name": "Downloads", "properties": {}}
    assert one(screen).event["properties"] == {"page": "Downloads"}  # open vocabulary: as sent
    anonymous = {**page, "userId": None}
    assert one(anonymous).event["user_id"] is None
    assert verdicts([event, one(screen).event])[1].reason_code is None


def test_other_events_take_their_properties_from_the_mapping_as_sent():
    rated = one(track("Title Rated", content_asset_id="t_3", rating=4)).event
    assert (rated["event_type"], rated["title_id"], rated["properties"]) == (
        "rating", "t_3", {"rating": 4})  # fmt: skip
    # never coerced: "4" stays a string and the loader says why it fails
    as_text = one(track("Title Rated", content_asset_id="t_3", rating="4")).event
    consent = one(track("Consent Updated", marketing_opt_in=True)).event
    survey = one(track("Survey Answered", survey_id="nps", question_id="score", answer="9")).event
    found = verdicts([rated, as_text, consent, survey])
    assert [v.reason for v in found] == [None, "wrong_type: properties.rating is not an integer",
                                         None, None]  # fmt: skip


def test_a_platform_renames_its_own_events_in_its_mapping_file(tmp_path):
    raw = json.loads(segment.DEFAULT_MAPPING_PATH.read_text())
    raw["track"]["Thumbs Up"] = {"event_type": "like"}
    raw["platform_default"] = "tv"
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(raw))
    mapping = segment.load_mapping(path)
    message = {**track("Thumbs Up", content_asset_id="t_9"), "context": {}}
    event = one(message, mapping=mapping).event
    assert (event["event_type"], event["platform"]) == ("like", "tv")
    liked = {**track("Title Liked", content_asset_id="t_9"), "context": {}}
    assert one(liked).reason == (
        "missing_field: platform (no known value at context.device.type, context.os.name, "
        "context.library.name)"
    )
    raw["track"]["Thumbs Up"] = {"event_type": "thumbs_up"}
    path.write_text(json.dumps(raw))
    with pytest.raises(segment.MappingError, match="not a contract event type"):
        segment.load_mapping(path)


def test_clock_skew_is_corrected_with_sent_at_and_received_at():
    # the device's clock is 30 minutes behind: sent at 09:30 by its clock, received at 10:00
    message = {**track("Title Liked", content_asset_id="t_1"), "sentAt": "2026-12-07T09:30:00Z"}
    event = one(message).event
    assert event["occurred_at"] == "2026-12-07T09:30:00.000Z"
    assert event["received_at"] == "2026-12-07T10:00:00.000Z"
    # the batch's sentAt applies to messages without their own
    batch = segment.map_messages([track("Title Liked", content_asset_id="t_1")], RECEIVED,
                                 "2026-12-07T09:00:30.500+00:00")  # fmt: skip
    assert batch[0].event["occurred_at"] == "2026-12-07T09:59:29.500Z"
    no_time = {**message, "timestamp": None}
    assert one(no_time).event["occurred_at"] == "2026-12-07T10:00:00.000Z"
    rudder_js = {**no_time, "originalTimestamp": "2026-12-07T09:29:00.000Z"}
    assert one(rudder_js).event["occurred_at"] == "2026-12-07T09:59:00.000Z"
    for bad in ("2026-12-07", "yesterday", 1733565600):
        outcome = one({**message, "timestamp": bad})
        assert outcome.status == "rejected" and outcome.reason_code == "wrong_type"


def test_message_ids_are_event_ids_and_others_become_a_stable_uuid5():
    message = track("Title Liked", content_asset_id="t_1")
    assert one(message).event["event_id"] == message["messageId"]
    ajs = {**message, "messageId": "ajs-next-1733565600000-abc"}
    first, again = one(ajs).event["event_id"], one(ajs).event["event_id"]
    assert first == again == str(uuid.uuid5(segment.MESSAGE_ID_NAMESPACE, ajs["messageId"]))
    assert one({**message, "messageId": None}).reason == "missing_field: event_id (messageId)"
    assert one({**message, "messageId": 7}).reason_code == "wrong_type"


def test_a_device_is_required_and_a_country_name_is_dropped_not_guessed():
    message = {**track("Title Liked", content_asset_id="t_1"), "anonymousId": None}
    assert one(message).reason == "missing_field: device_id (anonymousId or context.device.id)"
    from_context = {**message, "context": {**CONTEXT, "device": {"type": "ios", "id": "dev-9"}}}
    assert one(from_context).event["device_id"] == "dev-9"
    named = {**track("Title Liked", content_asset_id="t_1"),
             "context": {**CONTEXT, "location": {"country": "France"}}}  # fmt: skip
    assert one(named).event["country"] is None


def test_the_default_mapping_only_names_contract_event_types():
    mapping = segment.load_mapping()
    mapped = {e["event_type"] for e in mapping.track.values() if e is not None}
    assert mapped <= set(rules.ALL_EVENT_TYPES)
    # every event type but the anonymous-only navigation ones has a default name
    assert set(rules.ALL_EVENT_TYPES) - mapped - {"page_view"} == set()


def test_a_list_of_content_ids_names_a_title_only_when_it_holds_one():
    one_id = player("Video Playback Started", content_asset_ids=["t_5"])
    del one_id["properties"]["content_asset_id"]
    assert one(one_id).event["title_id"] == "t_5"
    two = {**one_id, "properties": {**one_id["properties"], "content_asset_ids": ["t_5", "t_6"]}}
    assert one(two).reason == (
        "invalid_value: title_id (properties.content_asset_ids) holds 2 ids, not one"
    )
