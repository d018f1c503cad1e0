"""Live recommendations, ``GET /v1/users/{user_id}/recommendations`` and
``GET /v1/devices/{device_id}/recommendations``: the serving model re-ranked with what the
viewer does in the current session.

The batch side is the serving bundle the server holds (``ottp.realtime.bundle``): its
serving model (``ottp.realtime.rerank.ServingModel``, written from the promoted model
when the bundle was published) and the recommender built on it when the bundle was
loaded. The live side is the live state's view of the actor (``ottp.realtime.state``),
turned into ``SessionSignals`` by :func:`session_signals`, a plain function:

- the current session's interactions, oldest first (browse, click, play, complete,
  like, dislike, watchlist, rating with its stars) and its current title (the title
  of the session's latest playback);
- the likes and dislikes the live state holds (the latest reaction per title), the
  titles with a complete play, and the share watched of each title played (the
  latest playback's furthest position over the duration);
- the titles shown on rails this session and never taken up after (no click, no
  playback since their first impression), with their impression counts: the
  recommender drops those shown ``IMPRESSION_LIMIT`` times or more.

A user is the actor ``<user_id>``; an anonymous device is the actor
``device:<device_id>``, recommended from trending and its session only (no batch
history). A request takes the bundle once, so a bundle swapped in meanwhile serves
the next request; every answer names the model version and the bundle version it
used. No id is logged.

The routes run in the event loop, not in the thread pool: the work is about half a
millisecond of CPU (numpy over a few hundred candidates), and a hand-off to a pool
thread and back costs more under load than it saves (two GIL hand-offs per
request). A view of the Redis state, a network round trip, is awaited, never waited
for in the loop. The answer is encoded with orjson; ``Recommendations`` documents it.

The plain request, the key in ``X-API-Key``, an id of 1 to 200 characters and ``k``
absent or written as a number from 1 to 100, is answered without FastAPI's
per-request dependency and parameter machinery (:class:`_PlainFirstRoute`, about a
fifth of a request's CPU); any other request (a Bearer key, a wrong or missing key,
a ``k`` to refuse or to coerce) goes through FastAPI's handler as declared, so its
answer and the OpenAPI page are the declared ones.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ottp.realtime.auth import key_matches, require_api_key
from ottp.realtime.bundle import Bundle
from ottp.realtime.rerank import Interaction, SessionSignals
from ottp.realtime.state import ActorView

DEFAULT_K = 10
MAX_K = 100
MAX_ID_CHARS = 200
DEVICE_PREFIX = "device:"


def session_signals(view: ActorView | None, user_id: str | None) -> SessionSignals:
    """What the recommender reads of one actor's live state (the list is in the module doc)."""
    if view is None:
        return SessionSignals(user_id=user_id)
    progress = view.progress
    return SessionSignals(
        user_id=user_id,
        interactions=tuple(
            Interaction(i.title_id, i.kind, at=i.at, value=i.value)
            for i in view.session_interactions
        ),
        current_title=view.current_title,
        liked=frozenset(view.liked),
        disliked=frozenset(view.disliked),
        completed=frozenset(t for t, p in progress.items() if p.complete_count),
        progress={t: min(max(p.pct, 0.0), 1.0) for t, p in progress.items() if p.pct is not None},
        impressions={t: i.count for t, i in view.impressions.items() if not i.clicked},
    )


def recommendations(
    bundle: Bundle, actor_id: str, signals: SessionSignals, k: int
) -> dict[str, Any]:
    """The answer: the recommender's top ``k`` with names and reasons, and the versions."""
    model = bundle.model
    items = bundle.recommender.recommend(signals, k)
    names = model.display_names
    return {
        "actor_id": actor_id,
        "items": [
            {
                "title_id": item.title_id,
                "title_name": names[item.title_id],
                "score": item.score,
                "reason_code": item.reason_code,
                "reason": item.reason_text,
            }
            for item in items
        ],
        "model_version": model.version,
        "bundle_version": bundle.version,
        "generated_at": datetime.now(UTC),
    }


class RecommendedTitle(BaseModel):
    title_id: str
    title_name: str | None
    score: float
    reason_code: str
    reason: str


class Recommendations(BaseModel):
    actor_id: str
    items: list[RecommendedTitle]
    model_version: str
    bundle_version: str
    generated_at: datetime


def _bundle_with_model(request: Request) -> Bundle:
    """The bundle the watcher holds (taken once), with a serving model; else a 503."""
    watcher = getattr(request.app.state, "bundle", None)
    bundle = watcher.current if watcher is not None else None
    if bundle is None:
        raise HTTPException(
            status_code=503,
            detail="no serving bundle yet: it is published after the first warehouse build "
            "(the serving/bundle asset)",
        )
    if bundle.recommender is None:
        raise HTTPException(
            status_code=503,
            detail=f"the serving bundle {bundle.version} has no serving model: "
            f"{bundle.model_reason}",
        )
    return bundle


async def _view(request: Request, actor_id: str) -> ActorView | None:
    """The actor's live view: read here for the embedded state (a dict lookup); from
    Redis, awaited in the event loop when the state can (``view_async``: no thread hop,
    a round trip must not hold the loop), else in the thread pool."""
    live = getattr(request.app.state, "live", None)
    if live is None:
        return None
    if live.backend == "memory":
        return live.view(actor_id)
    view_async = getattr(live, "view_async", None)
    if view_async is not None:
        return await view_async(actor_id)
    return await run_in_threadpool(live.view, actor_id)


def _answer(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


# the query of most requests: k alone, in digits without a leading zero
_PLAIN_K = re.compile(rb"k=([1-9][0-9]{0,2})")


def _plain_arguments(request: Request) -> dict[str, Any] | None:
    """The endpoint's arguments when the request is the plain case of the module doc:
    the right key in ``X-API-Key`` (or no key asked), its one path id within
    1..MAX_ID_CHARS characters, ``k`` absent or once, ASCII digits without a leading
    zero, within 1..MAX_K. None for anything else (FastAPI's handler answers it)."""
    expected = getattr(request.app.state, "api_key", None)
    if expected is not None:
        sent = request.headers.get("x-api-key")
        if not sent or not key_matches(sent, expected):
            return None
    if len(request.path_params) != 1:
        return None
    ((name, actor),) = request.path_params.items()
    if not isinstance(actor, str) or not 1 <= len(actor) <= MAX_ID_CHARS:
        return None
    k = DEFAULT_K
    query = request.scope.get("query_string")
    if query and (plain_k := _PLAIN_K.fullmatch(query)) is not None:
        k = int(plain_k[1])
        if k > MAX_K:
            return None
    elif query:
        given = request.query_params.getlist("k")
        if len(given) > 1:
            return None
        if given:
            text = given[0]
            if not (0 < len(text) <= 3 and text.isascii() and text.isdigit() and text[0] != "0"):
                return None
            k = int(text)
            if k > MAX_K:
                return None
    return {name: actor, "k": k}


class _PlainFirstRoute(APIRoute):
    """A route whose plain requests (see :func:`_plain_arguments`) call the endpoint
    directly; every other request takes FastAPI's handler, dependencies included."""

    def get_route_handler(self):
        declared = super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            arguments = _plain_arguments(request)
            if arguments is None:
                return await declared(request)
            return await endpoint(request, **arguments)

        return handler


router = APIRouter(
    dependencies=[Depends(require_api_key)],
    tags=["recommendations"],
    route_class=_PlainFirstRoute,
)

_ERRORS = {
    401: {"description": "Missing or wrong API key."},
    422: {"description": "k outside 1..100, or an id over 200 characters."},
    503: {"description": "No serving bundle yet, or the bundle has no serving model."},
}
K = Query(DEFAULT_K, ge=1, le=MAX_K, description="How many titles (1 to 100).")


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=Recommendations,
    responses={**_ERRORS, 404: {"description": "Unknown or deleted user."}},
)
async def user_recommendations(
    request: Request, user_id: str = Path(min_length=1, max_length=MAX_ID_CHARS), k: int = K
) -> Response:
    """The user's batch candidates re-ranked with the current session, with reasons."""
    bundle = _bundle_with_model(request)
    lifecycle = bundle.lifecycle_of(user_id)
    if lifecycle is not None and lifecycle["is_deleted"]:
        raise HTTPException(status_code=404, detail="unknown user: deleted")
    view = await _view(request, user_id)
    if view is not None and view.user_id != user_id:
        # an anonymous visitor's state (actor "device:<id>") is not a user's
        view = None
    if lifecycle is None and view is None:
        raise HTTPException(status_code=404, detail="unknown user: no batch profile, no activity")
    return _answer(recommendations(bundle, user_id, session_signals(view, user_id), k))


@router.get(
    "/v1/devices/{device_id}/recommendations",
    response_model=Recommendations,
    responses=_ERRORS,
)
async def device_recommendations(
    request: Request, device_id: str = Path(min_length=1, max_length=MAX_ID_CHARS), k: int = K
) -> Response:
    """An anonymous device (actor ``device:<id>``): trending re-ranked with its session.
    A device without events yet gets trending."""
    bundle = _bundle_with_model(request)
    actor_id = DEVICE_PREFIX + device_id
    signals = session_signals(await _view(request, actor_id), None)
    return _answer(recommendations(bundle, actor_id, signals, k))
