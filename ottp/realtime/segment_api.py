"""Segment's HTTP tracking API: ``/v1/batch`` and the single calls (``/v1/track``...).

What Segment's and RudderStack's SDKs send, taken unchanged: the write key as
the HTTP Basic user name (empty password), or ``writeKey`` in the body; a JSON
body, gzip or not. ``ottp.contract.segment`` maps each message onto the event
contract; the events then take the same path as ``POST /v1/events``
(``intake.land_lines``: the loader's validation, one copy per id, durable
landing, live state, triggers) before the answer. An ``identify`` makes no
event: it is written as an identity (``ottp.ingest.identities``: device to user,
traits left out) to the identities' own landing files, whose writer this
router's lifespan starts and closes.

The answer is Segment's, ``{"success": true}`` once the mapped events are
durable, with what the SDKs ignore and a client may read: counts, and the
fate of every message that was not accepted (``messages``: its index in the
body, its messageId, status, reason code and reason). A rejected message is
answered 200 too: resending it cannot change its fate, and a 4xx would make an
SDK drop or retry the whole batch. The log gets counts per reason code only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from ottp import config
from ottp.contract import segment
from ottp.ingest import identities, validate
from ottp.realtime import intake
from ottp.realtime.auth import key_matches
from ottp.realtime.landing_writer import LandingWriter

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _identity_writer(app: FastAPI) -> AsyncIterator[None]:
    """The identities' landing writer, for the app's life (inside the app's own lifespan)."""
    rt = app.state.rt
    writer = LandingWriter(config.settings().landing_dir, rt.landing_roll_bytes,
                           rt.landing_roll_seconds, kind=identities.KIND)  # fmt: skip
    if writer.start():
        logger.warning("recovered identity landing files left open by a crash")
    app.state.identities = writer
    try:
        yield
    finally:
        writer.close()


router = APIRouter(tags=["segment"], lifespan=_identity_writer)
CALLS = ("track", "page", "screen", "identify")
# Objects of a /v1/batch body merged into each of its messages (Segment's batch endpoint).
BATCH_SHARED = ("context", "integrations")
# What a browser SDK sends beside the body, answered by the CORS preflight (OTTP_CORS_ORIGINS):
# the write key (Basic), the JSON type, and what RudderStack's browser SDK adds (the anonymous
# id in base64, sentAt, its retry bookkeeping).
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "AnonymousId",
    "SentAt",
    "Rsa-Recovered",
    "Rsa-Retry-Attempt",
    "Rsa-Since-Last-Attempt",
    "Rsa-Since-First-Attempt",
    "Rsa-Retry-Reason",
)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Segment's error body: the Python SDK reads ``code`` and ``message``."""
    body = {"success": False, "code": code, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _basic_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header: the write key."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def _write_key(app) -> str | None:
    """The write key asked for: OTTP_SEGMENT_WRITE_KEY, else the API key (None: none asked)."""
    return app.state.rt.segment_write_key or app.state.api_key


def _writekey_in(body: object, expected: str) -> bool:
    sent = body.get("writeKey") if isinstance(body, dict) else None
    return isinstance(sent, str) and key_matches(sent, expected)


async def _messages(request: Request, call: str | None) -> tuple[list, object] | JSONResponse:
    """The body's messages and its batch-level ``sentAt``, or the error to answer.

    The write key is the Basic user name, or ``writeKey`` in the body (the
    Python SDK sends both): a body is judged only for a client with the key.
    """
    rt, expected = request.app.state.rt, _write_key(request.app)
    unauthorized = _error(
        401, "unauthorized", "missing or wrong write key: HTTP Basic, key as user"
    )
    basic = _basic_user(request.headers.get("authorization"))
    if expected is not None and basic is not None and not key_matches(basic, expected):
        return unauthorized
    keyed = expected is None or basic is not None
    try:
        body = json.loads(await intake.read_capped(request, rt.max_body_bytes))
    except intake.BodyError as exc:
        return _error(exc.status, "invalid_request", exc.reason) if keyed else unauthorized
    except (ValueError, RecursionError):
        return _error(400, "invalid_request", "body is not JSON") if keyed else unauthorized
    if not keyed and not _writekey_in(body, expected):
        return unauthorized
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "body is not a JSON object")
    if call is None:
        batch = body.get("batch")
        if not isinstance(batch, list):
            return _error(400, "invalid_request", "batch is not a list of messages")
        if len(batch) > rt.max_lines:
            return _error(413, "too_large", f"{len(batch)} messages: over the {rt.max_lines} cap")
        shared = {key: body[key] for key in BATCH_SHARED if body.get(key) is not None}
        wrong = [key for key, value in shared.items() if not isinstance(value, dict)]
        if wrong:
            return _error(400, "invalid_request", f"batch-level {wrong[0]} is not a JSON object")
        return _with_shared(batch, shared), body.get("sentAt")
    # one call: its type is the endpoint's, as Segment sets it
    return [{**body, "type": call}], None


def _with_shared(batch: list, shared: dict[str, dict]) -> list:
    """Each message with the batch-level ``context``/``integrations`` merged in, as Segment does.

    Key by key at the top level of each object: a key the message has wins whole
    (its ``context.device`` is not mixed with the batch's). A message without the
    object (or with null) takes the batch's; one whose object is not an object
    keeps it, for the mapping to judge.
    """
    if not shared:
        return batch
    return [_merged(message, shared) if isinstance(message, dict) else message
            for message in batch]  # fmt: skip


def _merged(message: dict, shared: dict[str, dict]) -> dict:
    merged = dict(message)
    for key, value in shared.items():
        own = message.get(key)
        if own is None:
            merged[key] = value
        elif isinstance(own, dict):
            merged[key] = {**value, **own}
    return merged


def _lines(outcomes: list[segment.Outcome]) -> tuple[intake.BodyLines, list[int]]:
    """The mapped events as intake lines, and each line's message index."""
    lines, where = intake.BodyLines(), []
    for outcome in outcomes:
        if outcome.event is None:
            continue
        text = json.dumps(outcome.event, ensure_ascii=False, separators=(",", ":"))
        refusal = validate.reader_refusal(text.encode())
        if refusal:
            lines.refusals[len(lines.texts)] = refusal
        lines.texts.append(None if refusal else text)
        where.append(outcome.index)
    return lines, where


def _fate(outcome: segment.Outcome, line_fate: dict | None) -> dict:
    """A message's fate: the mapping's, or (for a mapped one) the intake line's."""
    fate = {"index": outcome.index, "messageId": outcome.message_id}
    if line_fate is None:
        return {**fate, "status": outcome.status, "reason_code": outcome.reason_code,
                "reason": outcome.reason}  # fmt: skip
    fate.update(status=line_fate["status"], event_id=line_fate.get("event_id"))
    if line_fate["status"] == "duplicate":
        # intake's reason counts its own lines, not the batch's messages
        fate.update(reason_code="duplicate", reason="duplicate: messageId already in this batch")
    elif line_fate.get("reason_code"):
        fate.update(reason_code=line_fate["reason_code"], reason=line_fate["reason"])
    return fate


async def _land_identities(
    app, messages: list, received_at: datetime, sent_at: object
) -> dict[int, dict]:
    """Each ``identify`` written durably as an identity (``ottp.ingest.identities``): its fate.

    A repeated messageId in the body is a duplicate; 503 (``HTTPException``) when
    the identities cannot be written.
    """
    fates, lines, seen = {}, [], set()
    for index, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("type") == "identify"):
            continue
        fate = {"index": index, "messageId": message.get("messageId")}
        try:
            line = identities.identity_line(message, app.state.segment_mapping, received_at,
                                            sent_at)  # fmt: skip
        except identities.IdentityRejected as exc:
            fates[index] = {**fate, "status": "rejected", "reason_code": exc.code,
                            "reason": exc.reason}  # fmt: skip
            continue
        if line["message_id"] in seen:
            fates[index] = {**fate, "status": "duplicate", "reason_code": "duplicate",
                            "reason": "duplicate: messageId already in this batch"}  # fmt: skip
            continue
        seen.add(line["message_id"])
        fates[index] = {**fate, "status": "accepted"}
        lines.append(identities.encode(line))
    if lines:
        writer = getattr(app.state, "identities", None)
        try:
            if writer is None:
                raise RuntimeError("no identity writer")
            await asyncio.wrap_future(writer.submit(lines, received_at))
        except Exception:
            raise HTTPException(503, "identities cannot be written: nothing accepted") from None
    return fates


async def _handle(request: Request, call: str | None) -> Response:
    received_at = datetime.now(UTC)
    got = await _messages(request, call)
    if isinstance(got, JSONResponse):
        return got
    messages, sent_at = got
    app = request.app
    outcomes = segment.map_messages(messages, received_at, sent_at, app.state.segment_mapping)
    lines, where = _lines(outcomes)
    try:
        identity_fates = await _land_identities(app, messages, received_at, sent_at)
        line_fates, _ = await intake.land_lines(app, lines, received_at)
    except HTTPException as exc:
        return _error(exc.status_code, "unavailable", str(exc.detail), exc.headers)
    by_index = {where[f["line"] - 1]: f for f in line_fates}
    fates = [identity_fates.get(o.index) or _fate(o, by_index.get(o.index)) for o in outcomes]
    counts = Counter(f["status"] for f in fates)
    codes = Counter(f["reason_code"] for f in fates if f["status"] == "rejected")
    if codes:
        # codes and counts only: a reason may quote a value the client sent
        logger.warning("segment: %d of %d messages rejected %s", sum(codes.values()),
                       len(fates), dict(sorted(codes.items())))  # fmt: skip
    body = {
        "success": True,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "skipped": counts["skipped"],
        "rejected": counts["rejected"],
        "messages": [f for f in fates if f["status"] != "accepted"],
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


_RESPONSES = {
    400: {"description": "The body is not JSON, or a batch without a list of messages."},
    401: {"description": "Missing or wrong write key."},
    413: {"description": "Body over the byte cap, or more messages than the line cap."},
    503: {"description": "The landing files cannot be written: nothing was accepted."},
}


@router.post("/v1/batch", summary="Segment batch (Segment/RudderStack SDKs)", responses=_RESPONSES)
async def post_batch(request: Request) -> Response:
    """`{"batch": [messages], "sentAt": ...}` as Segment's SDKs send it; see docs/segment.md.

    Each message is mapped onto the event contract and goes through the same
    intake as `POST /v1/events`. `{"success": true}` once the accepted events are
    durable; `messages` lists each message not accepted with its reason.
    """
    return await _handle(request, None)


def _single(call: str):
    async def post_call(request: Request) -> Response:
        return await _handle(request, call)

    post_call.__doc__ = f"One `{call}` call (Segment's HTTP API); answered as `/v1/batch`."
    post_call.__name__ = f"post_{call}"
    return post_call


for _call in CALLS:
    router.add_api_route(
        f"/v1/{_call}",
        _single(_call),
        methods=["POST"],
        summary=f"Segment {_call} call",
        responses=_RESPONSES,
    )
