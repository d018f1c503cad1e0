"""The real-time service's FastAPI application: health, event intake, and what plugs into them.

``create_app`` is the factory ``ottp serve`` hands to uvicorn (one call per
worker process). Its lifespan starts the intake's validator thread and the
landing writer (which first recovers files a crashed process left open), then
opens the live state (the embedded one rebuilt from the last hours of landing
files) and the serving bundle's watcher, and stops them all at shutdown,
closing the open landing file. ``app.state`` holds
them for the routes: ``rt`` (settings), ``api_key``, ``validator``,
``landing``, ``live`` (the live state, ``ottp.realtime.state``) and ``bundle``
(the serving bundle's watcher, ``ottp.realtime.bundle``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import duckdb
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from ottp import config
from ottp.contract import segment
from ottp.realtime import intake, profile, recommend_api, segment_api
from ottp.realtime.bundle import BundleWatcher
from ottp.realtime.landing_writer import LandingWriter
from ottp.realtime.state import LiveState, open_state, rebuild_from_landing
from ottp.realtime.triggers import TriggerEngine
from ottp.realtime.webhook import Delivery

logger = logging.getLogger(__name__)

DESCRIPTION = """
The real-time side of the personalization warehouse.

* `POST /v1/events` takes events (a JSON array or NDJSON), validates each one
  with the batch loader's rules, and answers with every line's fate once the
  accepted ones are durable in the landing files that `ottp load` reads.
* `POST /v1/batch`, `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`: Segment's
  tracking API, as Segment's and RudderStack's SDKs send it (write key as HTTP
  Basic user), mapped onto the event contract (docs/segment.md), same intake.
* `GET /v1/users/{id}/recommendations`, `GET /v1/devices/{id}/recommendations`:
  recommendations that follow the viewer's session, with reasons (docs/realtime.md).
* `GET /health` needs no key.

Every other route needs the API key (`OTTP_API_KEY`): `X-API-Key: <key>` or
`Authorization: Bearer <key>`. See docs/realtime.md.
"""


def create_app(rt: config.RealtimeSettings | None = None, *, require_key: bool = True) -> FastAPI:
    """The service; with ``require_key`` (default) it refuses to exist without an API key."""
    rt = rt or config.realtime_settings()
    if require_key and not rt.api_key:
        raise RuntimeError("OTTP_API_KEY is not set: the service does not run without a key")
    landing_dir = config.settings().landing_dir

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = LandingWriter(landing_dir, rt.landing_roll_bytes, rt.landing_roll_seconds)
        recovered = writer.start()
        if recovered:
            logger.warning("recovered %d landing files left open by a crash", len(recovered))
        validator = intake.LineValidator(rt.max_pending_lines)
        validator.start()
        app.state.landing, app.state.validator = writer, validator
        # After the recovery: the rebuild reads the files it finished.
        app.state.live = _open_live(rt, landing_dir)
        app.state.bundle = BundleWatcher(rt).start()
        app.state.triggers = _open_triggers(rt, landing_dir, app.state.bundle)
        logger.info("intake ready: landing files under %s", landing_dir / "events")
        try:
            yield
        finally:
            validator.stop()
            writer.close()
            app.state.triggers.close()
            app.state.bundle.stop()
            app.state.live.close()

    app = FastAPI(
        title="ottp real-time service",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
    )
    app.state.rt = rt
    # None: no key asked (ottp serve --insecure-no-key, without OTTP_API_KEY).
    app.state.api_key = rt.api_key
    app.state.live = None
    app.state.bundle = None
    app.state.triggers = None
    app.include_router(intake.router)
    app.include_router(profile.router)
    # live recommendations: the bundle's serving model re-ranked with the session
    app.include_router(recommend_api.router)
    # Segment/RudderStack SDKs: the tracking API mapped onto the contract, same intake
    app.state.segment_mapping = segment.load_mapping(rt.segment_mapping)
    app.include_router(segment_api.router)
    if rt.cors_origins:
        # Browser SDKs (OTTP_CORS_ORIGINS): preflight answered for the headers they send
        app.add_middleware(CORSMiddleware, allow_origins=list(rt.cors_origins), max_age=600,
                           allow_methods=["GET", "POST"],
                           allow_headers=list(segment_api.CORS_HEADERS))  # fmt: skip

    @app.get("/health", tags=["service"], summary="Liveness and what is loaded")
    def health(request: Request) -> JSONResponse:
        """No key needed. 200 and `ok` while intake can accept events (503 and `degraded`
        if its validator or landing writer stopped); the live state's backend and the
        serving bundle's version, if any."""
        state = request.app.state
        live, bundle = state.live, state.bundle
        intake_up = all(
            getattr(getattr(state, name, None), "alive", False) for name in ("validator", "landing")
        )
        body = {
            "status": "ok" if intake_up else "degraded",
            "intake": intake_up,
            "state_backend": getattr(live, "backend", None),
            "bundle_version": getattr(bundle, "version", None),
        }
        return JSONResponse(body, status_code=200 if intake_up else 503)

    return app


def _open_live(rt: config.RealtimeSettings, landing_dir: Path) -> LiveState:
    """The live state; the embedded one is rebuilt from the last hours of landing files."""
    live = open_state(rt)
    if live.backend == "memory":
        try:
            rebuild_from_landing(live, landing_dir, rt.state_rebuild_hours)
        except (OSError, duckdb.Error) as exc:
            # Serve anyway: the state fills from the events that arrive from now on.
            logger.warning("live state not rebuilt from landing: %s", type(exc).__name__)
    return live


def _open_triggers(
    rt: config.RealtimeSettings, landing_dir: Path, watcher: BundleWatcher
) -> TriggerEngine:
    """The live scenarios: fired from intake's changes, delivered to the CRM and the webhook."""
    engine = TriggerEngine(
        landing_dir,
        lambda: watcher.current,
        redis_url=rt.redis_url,
        delivery=Delivery(rt).start(),
        roll_bytes=rt.landing_roll_bytes,
        roll_seconds=rt.landing_roll_seconds,
    )
    return engine.start()


def create_insecure_app() -> FastAPI:
    """``ottp serve --insecure-no-key``: the key is checked only if OTTP_API_KEY is set."""
    rt = config.realtime_settings()
    return create_app(rt, require_key=rt.api_key is not None)
