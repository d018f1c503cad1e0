"""``POST /v1/events``: events in, each line's fate out, accepted lines durable before the answer.

A request's body is a JSON array of events or NDJSON (one event per line),
capped in bytes and lines (413). Each line gets the batch loader's verdict:
the reader's refusals (``validate.reader_refusal``) and the same validation
query (``validate.validate_event_lines``), so a line accepted here is accepted
by ``ottp load`` and a rejected one is rejected with the same reason code.

The validation query costs about 10 ms whatever the number of lines, so one
validator thread validates every request queued meanwhile in one query
(group validation), as the landing writer fsyncs them in one group commit.

A line without ``received_at`` (absent or null) gets the time the request
was received: the collector is what receives it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ottp.ingest import validate
from ottp.realtime.auth import require_api_key

logger = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_BOM = b"\xef\xbb\xbf"
_STOP = object()
# Lines validated in one query at most: bounds its memory and a group's latency.
MAX_GROUP_LINES = 20_000


class BodyError(Exception):
    """The body as a whole is refused: ``status`` (400 or 413) and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# ------------------------------------------------------------------ the body


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) before more than ``max_bytes`` are read."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BodyError(400, "Content-Length is not a number")
        if int(declared) > max_bytes:
            raise BodyError(413, f"body of {int(declared)} bytes is over the {max_bytes} cap")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise BodyError(415, f"Content-Encoding {encoding[:20]!r}: send identity or gzip")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"body over the {max_bytes}-byte cap")
        chunks.append(chunk)
    body = b"".join(chunks)
    return gunzip_capped(body, max_bytes) if encoding == "gzip" else body


def gunzip_capped(body: bytes, max_bytes: int) -> bytes:
    """A gzip body inflated, refused (413) past ``max_bytes`` of inflated data."""
    out, size, rest = [], 0, body
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            out.append(inflater.decompress(rest, max_bytes + 1 - size))
            size += len(out[-1])
            if size > max_bytes:
                raise BodyError(413, f"body inflates past the {max_bytes}-byte cap")
            if not inflater.eof:
                raise BodyError(400, "gzip body is truncated")
            rest = inflater.unused_data
    except zlib.error as exc:
        raise BodyError(400, f"gzip body is corrupt: {exc}") from None
    return b"".join(out)


def receipt_timestamp(received_at: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the contract's date-time pattern reads it."""
    return received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _dump(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        text.encode()
        return text
    except UnicodeEncodeError:  # a lone surrogate escape: kept escaped
        return json.dumps(value, separators=(",", ":"))


def _with_received_at(text: str, stamp: str) -> str:
    """The line with ``received_at`` set to ``stamp`` if it is an object without one.

    Inserted as text, so the rest of the line is exactly what the client sent;
    only a line holding ``"received_at": null`` is written anew.
    """
    if '"received_at"' in text:  # at the top level, or only deeper down?
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return text
        if not isinstance(parsed, dict) or parsed.get("received_at") is not None:
            return text
        if "received_at" in parsed:
            parsed["received_at"] = stamp
            return _dump(parsed)
    body = text.lstrip()
    if not body.startswith("{"):
        return text
    rest = body[1:]
    comma = "" if rest.lstrip().startswith("}") else ","
    return '{"received_at":"' + stamp + '"' + comma + rest


@dataclass
class BodyLines:
    """A body cut into lines: the text to validate, or the reader's refusal, per line."""

    texts: list[str | None] = field(default_factory=list)
    refusals: dict[int, tuple[str, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _is_ndjson(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in NDJSON_TYPES


def split_body(body: bytes, content_type: str, max_lines: int, stamp: str) -> BodyLines:
    """Lines of a JSON array or of NDJSON; ``BodyError`` if the body is neither."""
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    start = body.lstrip()[:1]
    if not start:
        raise BodyError(400, "empty body: send a JSON array of events or NDJSON")
    if start == b"[" or (start == b"{" and not _is_ndjson(content_type)):
        try:
            array = _json_array(body, start, content_type)
            if array is not None:
                if len(array) > max_lines:
                    raise BodyError(413, f"{len(array)} events: over the {max_lines}-line cap")
                return _array_lines(array, stamp)
        except RecursionError:
            raise BodyError(400, "body is nested too deeply") from None
    elif start != b"{":
        raise BodyError(
            400, "body is neither a JSON array of events nor NDJSON (one JSON object per line)"
        )
    return _ndjson_lines(body, max_lines, stamp)


def _json_array(body: bytes, start: bytes, content_type: str) -> list | None:
    """The events of a JSON array (or one object); None when the body reads as NDJSON."""
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError:
        raise BodyError(400, "body is not UTF-8") from None
    except ValueError as exc:
        # Several objects, one per line: NDJSON sent as application/json.
        if start == b"{" and str(exc).startswith("Extra data"):
            return None
        if _is_ndjson(content_type):
            return None
        raise BodyError(400, f"body is not valid JSON: {exc}") from None
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise BodyError(400, "body is neither a JSON array of events nor NDJSON")
    return parsed


def _array_lines(array: list, stamp: str) -> BodyLines:
    lines = BodyLines()
    for i, element in enumerate(array):
        if isinstance(element, dict) and element.get("received_at") is None:
            element = {**element, "received_at": stamp}
        text = _dump(element)
        refusal = validate.reader_refusal(text.encode())
        if refusal:
            lines.refusals[i] = refusal
            text = None
        lines.texts.append(text)
    return lines


def _ndjson_lines(body: bytes, max_lines: int, stamp: str) -> BodyLines:
    raw = body.split(b"\n")
    if raw[-1] in (b"", b"\r"):
        raw.pop()  # the last line's own newline
    if len(raw) > max_lines:
        raise BodyError(413, f"{len(raw)} lines: over the {max_lines}-line cap")
    lines = BodyLines()
    for i, line in enumerate(raw):
        if line.endswith(b"\r"):
            line = line[:-1]  # CRLF, as the loader reads it
        refusal = validate.reader_refusal(line)
        sent = None if refusal else line.decode()
        text = None if refusal else _with_received_at(sent, stamp)
        if text is not sent:
            # what lands is checked: the received_at default may make it too long
            refusal = validate.reader_refusal(text.encode())
        if refusal:
            lines.refusals[i] = refusal
            text = None
        lines.texts.append(text)
    return lines


# ------------------------------------------------------------------ validation


@dataclass
class _Job:
    texts: list[str]
    done: Future = field(default_factory=Future)


class Overloaded(Exception):
    """More lines wait for validation than the service takes on: answered 503, retried later."""


class LineValidator:
    """One thread, one in-memory DuckDB: every queued request's lines in one validation query.

    At most ``max_pending`` lines wait at once; a request that would go past it is
    refused (:class:`Overloaded`) before anything of it is queued.
    """

    def __init__(self, max_pending: int = 200_000) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="line-validator", daemon=True)
        self.max_pending = max_pending
        self._pending = 0
        self._pending_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Lines queued or being validated now."""
        return self._pending

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    async def verdicts(self, texts: list[str]) -> list[validate.LineVerdict]:
        if not texts:
            return []
        with self._pending_lock:
            if self._pending + len(texts) > self.max_pending:
                raise Overloaded(f"{self._pending} lines already wait for validation")
            self._pending += len(texts)
        job = _Job(texts)
        job.done.add_done_callback(lambda _: self._release(len(texts)))
        self._queue.put(job)
        return await asyncio.wrap_future(job.done)

    def _release(self, lines: int) -> None:
        with self._pending_lock:
            self._pending -= lines

    def _run(self) -> None:
        con = duckdb.connect(config={"threads": 1})
        carry, stopping = None, False
        try:
            while not (stopping and carry is None):
                item = carry if carry is not None else self._queue.get()
                jobs, size, carry = [], 0, None
                while item is not None:
                    if item is _STOP:
                        stopping = True
                    elif jobs and size + len(item.texts) > MAX_GROUP_LINES:
                        carry = item  # the next group's first
                        break
                    else:
                        jobs.append(item)
                        size += len(item.texts)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                # a request cancelled while it waited (client gone, shutdown) is dropped here;
                # the others can no longer be cancelled, so setting their result is safe
                jobs = [job for job in jobs if job.done.set_running_or_notify_cancel()]
                if jobs:
                    self._validate(con, jobs)
        finally:
            con.close()

    def _validate(self, con: duckdb.DuckDBPyConnection, jobs: list[_Job]) -> None:
        try:
            found = validate.validate_event_lines(con, [t for job in jobs for t in job.texts])
        except duckdb.Error:
            # One request must not fail the others: each alone, then line by line.
            for job in jobs:
                job.done.set_result(_alone(con, job.texts))
            return
        except Exception as exc:  # every waiting request must get an answer
            logger.error("validation failed for %d requests: %s", len(jobs), type(exc).__name__)
            for job in jobs:
                job.done.set_exception(exc)
            return
        start = 0
        for job in jobs:
            job.done.set_result(found[start : start + len(job.texts)])
            start += len(job.texts)


def _alone(con: duckdb.DuckDBPyConnection, texts: list[str]) -> list[validate.LineVerdict]:
    try:
        return validate.validate_event_lines(con, texts)
    except duckdb.Error:
        pass
    verdicts = []
    for text in texts:
        try:
            verdicts += validate.validate_event_lines(con, [text])
        except duckdb.Error:
            verdicts.append(
                validate.LineVerdict(None, "invalid_json", "invalid_json: unreadable line")
            )
    return verdicts


# ------------------------------------------------------------------ fates


class LineFate(BaseModel):
    """What became of one line of the body."""

    line: int = Field(description="Position of the line (or array element) in the body, from 1.")
    status: str = Field(description="accepted, rejected, or duplicate (of an earlier line).")
    event_id: str | None = Field(None, description="The event's id, when it has a valid one.")
    reason_code: str | None = Field(
        None, description="Why it was rejected: the loader's reason code (docs/event-contract.md)."
    )
    reason: str | None = Field(None, description="The reason code with the field concerned.")


class IntakeResult(BaseModel):
    """The fate of every line; accepted lines are durable in the landing files."""

    accepted: int
    rejected: int
    duplicates: int
    lines: list[LineFate]


def decide(
    lines: BodyLines, verdicts: Sequence[validate.LineVerdict]
) -> tuple[list[dict], list[int]]:
    """Each line's fate, and the positions of the accepted lines (first copy of an id wins)."""
    fates, accepted, first_line = [], [], {}
    found = iter(verdicts)
    for i in range(len(lines)):
        refusal = lines.refusals.get(i)
        if refusal is not None:
            code, reason = refusal
            fate = {"line": i + 1, "status": "rejected", "reason_code": code, "reason": reason}
        else:
            v = next(found)
            fate = {"line": i + 1, "status": "accepted", "event_id": v.event_id}
            if v.reason_code is not None:
                fate.update(status="rejected", reason_code=v.reason_code, reason=v.reason)
            elif v.event_id in first_line:
                first = first_line[v.event_id]
                fate.update(
                    status="duplicate",
                    reason_code="duplicate",
                    reason=f"duplicate: event_id already on line {first} of this body",
                )
            else:
                first_line[v.event_id] = i + 1
                accepted.append(i)
        fates.append(fate)
    return fates, accepted


router = APIRouter(tags=["intake"])


@router.post(
    "/v1/events",
    dependencies=[Depends(require_api_key)],
    summary="Send events",
    response_model=IntakeResult,
    responses={
        400: {"description": "The body is neither a JSON array nor NDJSON."},
        401: {"description": "Missing or wrong API key."},
        413: {"description": "Body over the byte cap or the line cap."},
        415: {"description": "A Content-Encoding other than gzip."},
        503: {
            "description": "Overloaded (with Retry-After) or the landing files cannot be "
            "written: nothing was accepted."
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def post_events(request: Request) -> Response:
    """Validate each event with the batch loader's rules and append the valid ones to landing.

    The body is a JSON array of events (`application/json`) or NDJSON, one event
    per line (`application/x-ndjson`), optionally gzip-compressed
    (`Content-Encoding: gzip`). The answer gives every line's fate; it is
    sent only once the accepted lines are fsynced to the landing files, which
    `ottp load` loads exactly once (a retried event is deduplicated on `event_id`).
    An event without `received_at` gets the time it was received.
    """
    app = request.app
    rt = app.state.rt
    received_at = datetime.now(UTC)
    try:
        body = await read_capped(request, rt.max_body_bytes)
        lines = split_body(
            body,
            request.headers.get("content-type", ""),
            rt.max_lines,
            receipt_timestamp(received_at),
        )
    except BodyError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    del body
    fates, accepted = await land_lines(app, lines, received_at)
    result = {
        "accepted": len(accepted),
        "rejected": sum(1 for f in fates if f["status"] == "rejected"),
        "duplicates": sum(1 for f in fates if f["status"] == "duplicate"),
        "lines": fates,
    }
    return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")


async def land_lines(app, lines: BodyLines, received_at: datetime) -> tuple[list[dict], list[int]]:
    """The intake path after the body is cut: validate, keep one copy per id, land, go live.

    Each line's fate and the positions of the accepted ones (see :func:`decide`),
    answered once the accepted lines are fsynced and applied to the live state and
    triggers. 503 (``HTTPException``) when they cannot be validated or written:
    nothing was accepted then. ``POST /v1/events`` and the Segment API
    (``ottp.realtime.segment_api``) both end here.
    """
    try:
        verdicts = await app.state.validator.verdicts([t for t in lines.texts if t is not None])
    except Overloaded:
        raise HTTPException(
            503, "overloaded: nothing accepted, retry later", headers={"Retry-After": "1"}
        ) from None
    except Exception:
        raise HTTPException(503, "the events could not be validated: nothing accepted") from None
    fates, accepted = decide(lines, verdicts)
    if accepted:
        durable = app.state.landing.submit([lines.texts[i].encode() for i in accepted], received_at)
        try:
            await asyncio.wrap_future(durable)
        except Exception:
            raise HTTPException(503, "landing files cannot be written: nothing accepted") from None
        await _apply_live(app, [lines.texts[i] for i in accepted])
    return fates, accepted


async def _apply_live(app, texts: list[str]) -> None:
    """The accepted events to the live state, once durable; a failure there loses no event."""
    live = getattr(app.state, "live", None)
    if live is None:
        return
    events = [json.loads(t) for t in texts]
    try:
        changes = await run_in_threadpool(live.apply, events)
    except Exception as exc:  # the events are durable: the batch path still gets them
        logger.warning("live state not updated (%s); the events are in landing", type(exc).__name__)
        return
    triggers = getattr(app.state, "triggers", None)
    if triggers is None:
        return
    try:
        # the live scenarios (ottp.realtime.triggers): fired and recorded before the answer
        await run_in_threadpool(triggers.on_changes, changes, live.view, events)
    except Exception as exc:  # a trigger not fired live is detected by the next build
        logger.warning("live triggers not evaluated (%s)", type(exc).__name__)
