"""The live profile, ``GET /v1/users/{user_id}/profile``: what the batch marts knew, plus
what has happened since.

The batch side is the serving bundle the server holds (``ottp.realtime.bundle``); the
live side is the live state's view of the user (``ottp.realtime.state``). The merge
rules are plain functions, testable without HTTP:

- **Segments** (:func:`merge_segments`): per category, the distinct titles the user
  validly played as of the build, united with the titles the live state has a
  valid play of (their category from the bundle's titles), mapped through the
  bundle's segment thresholds exactly as ``user_category_segments`` maps them. A
  title already counted by the batch is not counted again, so the viewer whose
  sixth distinct title of a category becomes a valid play is a fan now. A title the
  bundle does not know yet (added to the catalog since the build) has no category
  and counts from the next build.
- **Lifecycle** (:func:`merge_lifecycle`): the batch stage, moved on by a play the
  live state saw start after the bundle's as_of, in the order of ``user_lifecycle``'s
  rules: a cancelled subscription stays ``churned``; ``churned`` for inactivity
  becomes ``reactivated`` (the comeback rule); ``at_risk`` becomes ``active``;
  ``new``, ``reactivated`` and ``active`` stay. A user the marts do not hold yet,
  with live activity, is ``new``. Stages never age live: a user who stops watching
  turns ``at_risk`` at the next build.
- **Continue-watching** (:func:`merge_continue_watching`): the batch list, where a
  live valid play newer than the batch entry wins. It keeps or adds the title at
  the live resume position when that play stopped before completion past
  ``continue_watching_min_position_s``, and drops it when the play completed or
  stopped before that position (``continue_watching``'s rule: the latest valid play
  decides). Unavailable or unknown titles are left out; the list is ranked by last
  watched, newest first.

A request takes the bundle the watcher holds once, so a bundle swap in the middle
of it changes nothing it answers. No user id is logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel

from ottp.realtime.auth import require_api_key
from ottp.realtime.bundle import Bundle

CASUAL = "casual"
NON_VIEWER = "non_viewer"
# Stages a live play moves on (user_lifecycle's rules); others stay as the batch set them.
_AFTER_A_PLAY = {"churned": "reactivated", "at_risk": "active"}
NEW = "new"


def _utc(moment: datetime | None) -> datetime | None:
    """Aware UTC; the bundle's timestamps are naive UTC, the live state's aware."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def segment_for(titles_watched: int, thresholds: Mapping[str, int]) -> str:
    """The highest segment whose min_titles_watched is reached; ``casual`` below all."""
    reached = [(n, s) for s, n in thresholds.items() if titles_watched >= n]
    return max(reached)[1] if reached else CASUAL


def merge_segments(
    bundle: Bundle, user_id: str, live_valid_titles: Iterable[str]
) -> list[dict[str, Any]]:
    """Segments per category now: batch valid titles ∪ live valid titles, through the thresholds."""
    batch = bundle.watched_titles(user_id)
    merged = {category: set(titles) for category, titles in batch.items()}
    for title_id in live_valid_titles:
        category = bundle.category_of(title_id)
        if category is not None:
            merged.setdefault(category, set()).add(title_id)
    batch_segments = {row["category"]: row for row in bundle.segments.rows(user_id)}
    out = []
    for category in sorted(set(merged) | set(batch_segments)):
        count = len(merged.get(category, ()))
        segment = segment_for(count, bundle.thresholds)
        before = batch_segments.get(category)
        out.append(
            {
                "category": category,
                "segment": segment,
                "is_fan": segment != CASUAL,
                "titles_watched": count,
                "live_titles_watched": count - len(batch.get(category, ())),
                "batch_segment": before["segment"] if before else None,
                "batch_titles_watched": before["titles_watched"] if before else 0,
            }
        )
    return out


def highest_segment(
    segments: list[dict[str, Any]], thresholds: Mapping[str, int], batch: str | None
) -> str:
    """user_segments' rule: the highest fan segment; else casual for a viewer; else non_viewer."""
    fan = [(thresholds[s["segment"]], s["segment"]) for s in segments if s["is_fan"]]
    if fan:
        return max(fan)[1]
    if any(s["titles_watched"] for s in segments) or batch == CASUAL:
        return CASUAL
    return batch or NON_VIEWER


def merge_lifecycle(
    batch: Mapping[str, Any] | None, last_live_play_at: datetime | None, as_of: datetime | None
) -> dict[str, Any]:
    """The lifecycle stage now (the rule is in this module's docstring)."""
    as_of = _utc(as_of)
    last_live_play_at = _utc(last_live_play_at)
    played_since = last_live_play_at is not None and (as_of is None or last_live_play_at > as_of)
    if batch is None:
        return {
            "stage": NEW,
            "batch_stage": None,
            "is_live": True,
            "last_play_at": last_live_play_at,
        }
    stage = batch["lifecycle_stage"]
    if played_since and not batch["is_cancelled"]:
        stage = _AFTER_A_PLAY.get(stage, stage)
    batch_play = _utc(batch["last_play_at"])
    return {
        "stage": stage,
        "batch_stage": batch["lifecycle_stage"],
        "is_live": stage != batch["lifecycle_stage"],
        "last_play_at": last_live_play_at if played_since else batch_play,
    }


_NEVER = datetime.min.replace(tzinfo=UTC)


def _live_entry(title_id: str, position: float, duration: float | None, at: datetime) -> dict:
    # continue_watching's columns: the player's duration, as marts.plays has it
    return {
        "title_id": title_id,
        "resume_position_s": position,
        "resume_pct": position / duration if duration else None,
        "remaining_s": duration - position if duration else None,
        "last_watched_at": at,
        "source": "live",
    }


def merge_continue_watching(
    batch: Iterable[Mapping[str, Any]],
    progress: Mapping[str, Any],
    titles: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The batch list updated with live progress (the rule is in this module's docstring).

    ``progress`` maps a title to the live state's ``TitleProgress`` (``valid_play_count``,
    ``resume_position_s`` and ``resume_watched_at`` of its latest valid play when that
    one is resumable, ``last_watched_at`` of its latest play, ``duration_s``).
    """
    entries = {
        row["title_id"]: {
            "title_id": row["title_id"],
            "resume_position_s": row["resume_position_s"],
            "resume_pct": row["resume_pct"],
            "remaining_s": row["remaining_s"],
            "last_watched_at": _utc(row["last_watched_at"]),
            "source": "batch",
        }
        for row in batch
    }
    for title_id, p in progress.items():
        title = titles.get(title_id)
        if not p.valid_play_count or title is None or not title["is_available"]:
            continue
        current = entries.get(title_id)
        since = current["last_watched_at"] if current else None
        if p.resume_position_s is not None:
            at = _utc(p.resume_watched_at)
            if since is None or at > since:
                duration = p.duration_s or title["duration_s"]
                entries[title_id] = _live_entry(title_id, p.resume_position_s, duration, at)
        # the latest valid live play completed or stopped early; it is newer than the
        # batch entry when the live state's latest play of the title is
        elif current is not None and _utc(p.last_watched_at) > (since or _NEVER):
            del entries[title_id]
    ranked = sorted(entries.values(), key=lambda e: e["title_id"])
    ranked.sort(key=lambda e: e["last_watched_at"] or _NEVER, reverse=True)
    return [{**e, "continue_rank": rank} for rank, e in enumerate(ranked, start=1)]


def build_profile(bundle: Bundle, user_id: str, view: Any | None) -> dict[str, Any] | None:
    """The profile of one user from a bundle and the live view (None: unknown to both)."""
    batch_lifecycle = bundle.lifecycle_of(user_id)
    if batch_lifecycle is not None and batch_lifecycle["is_deleted"]:
        return None
    if batch_lifecycle is None and view is None:
        return None
    progress: Mapping[str, Any] = view.progress if view is not None else {}
    live_valid = [t for t, p in progress.items() if p.valid_play_count]
    segments = merge_segments(bundle, user_id, live_valid)
    last_live_play = max((p.started_at for p in progress.values()), default=None)
    batch_highest = batch_lifecycle["highest_segment"] if batch_lifecycle else None
    return {
        "user_id": user_id,
        "bundle_version": bundle.version,
        "as_of": _utc(bundle.as_of),
        "lifecycle": merge_lifecycle(batch_lifecycle, last_live_play, bundle.as_of),
        "highest_segment": highest_segment(segments, bundle.thresholds, batch_highest),
        "fan_categories": [s["category"] for s in segments if s["is_fan"]],
        "segments": segments,
        "continue_watching": merge_continue_watching(
            bundle.continue_watching.rows(user_id), progress, bundle.titles
        ),
        "has_live_activity": view is not None,
    }


class Lifecycle(BaseModel):
    stage: str
    batch_stage: str | None
    is_live: bool
    last_play_at: datetime | None


class CategorySegment(BaseModel):
    category: str
    segment: str
    is_fan: bool
    titles_watched: int
    live_titles_watched: int
    batch_segment: str | None
    batch_titles_watched: int


class ContinueWatching(BaseModel):
    title_id: str
    resume_position_s: float
    resume_pct: float | None
    remaining_s: float | None
    last_watched_at: datetime | None
    source: str
    continue_rank: int


class Profile(BaseModel):
    user_id: str
    bundle_version: str
    as_of: datetime | None
    lifecycle: Lifecycle
    highest_segment: str
    fan_categories: list[str]
    segments: list[CategorySegment]
    continue_watching: list[ContinueWatching]
    has_live_activity: bool


router = APIRouter(dependencies=[Depends(require_api_key)], tags=["profiles"])


@router.get(
    "/v1/users/{user_id}/profile",
    response_model=Profile,
    responses={
        401: {"description": "Missing or wrong API key."},
        404: {"description": "Neither the marts nor the live state know this user."},
        503: {"description": "No serving bundle published yet."},
    },
)
def get_profile(
    request: Request, user_id: str = Path(min_length=1, max_length=200)
) -> dict[str, Any]:
    """Lifecycle, segments per category as of this second, and continue-watching."""
    watcher = getattr(request.app.state, "bundle", None)
    # taken once: a bundle swapped in meanwhile serves the next request
    bundle = watcher.current if watcher is not None else None
    if bundle is None:
        raise HTTPException(
            status_code=503,
            detail="no serving bundle yet: it is published after the first warehouse build "
            "(the serving/bundle asset)",
        )
    live = getattr(request.app.state, "live", None)
    view = live.view(user_id) if live is not None else None
    if view is not None and view.user_id != user_id:
        # an anonymous visitor's state (actor "device:<id>") is not a user's profile
        view = None
    profile = build_profile(bundle, user_id, view)
    if profile is None:
        raise HTTPException(status_code=404, detail="unknown user: no batch profile, no activity")
    return profile
