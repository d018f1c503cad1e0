"""The live state in Redis, shared by several server processes, with a memory fallback.

:class:`RedisState` keeps one key per actor (``ottp:live:actor:<actor_id>``) holding the
actor's state as JSON (``ActorState.to_dict``), with a TTL of a few days refreshed
by every update. A batch is applied as one optimistic transaction: WATCH the
batch's actor keys, read them (MGET), apply the events in Python (the same code as
the memory state), then MULTI / SET (or DEL) / EXEC. If another process changed one
of those keys in between, EXEC fails and the batch is applied again to the fresh
state, so two processes applying events of one actor lose no update, and a
:class:`~ottp.realtime.state.LiveChange` is reported by the process whose
transaction made it true, once.

:class:`ResilientState` is what ``open_state`` gives with a Redis URL. While Redis
is unreachable (at start, or gone away) it applies events to an embedded
:class:`~ottp.realtime.state.MemoryState`, logs one warning (the error's class,
never a URL, an id or an event), and keeps the events applied meanwhile (up to
:data:`MAX_OUTAGE_EVENTS`, oldest dropped first with a warning). A thread tries
Redis again every ``retry_s``; once it answers, the kept events are replayed into
Redis in order, then Redis serves again and the memory state is dropped.

A rebuild from the landing files (``restore``) while Redis is away fills the
embedded state only: those events reached Redis when they arrived, and are not
replayed.

What the outage costs: views during it show only what happened since it began
(Redis's state is out of reach); LiveChanges are reported from memory as they
happen, and the replay does not report them again. Replayed events are merged by
the same order-independent rules, so plays, titles and reactions come out as if
Redis had never left; an event whose transaction committed just as the connection
broke is replayed too, and ignored as a resend (its event_id is in the actor's
recent ids, stored with the state in the same transaction).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from ottp.realtime import live_rules as lr
from ottp.realtime.live_rules import LiveRules
from ottp.realtime.state import (
    STATE_TTL_S,
    ActorState,
    ActorView,
    LiveChange,
    LiveState,
    MemoryState,
    actor_view,
    apply_to_actor,
    prepare,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "ottp:live:actor:"
# A batch that loses this many WATCH races in a row is an error, not contention.
MAX_ATTEMPTS = 50
# Events kept to replay into Redis after an outage.
MAX_OUTAGE_EVENTS = 100_000
REPLAY_CHUNK = 1000
# Redis is tried again this often while away.
RETRY_S = 5.0
# A request must not hang on a Redis that does not answer.
CONNECT_TIMEOUT_S = 0.5
SOCKET_TIMEOUT_S = 2.0
# The errors that mean Redis is away (not a bug in the data).
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


def actor_key(actor_id: str) -> str:
    return KEY_PREFIX + actor_id


def connect(url: str) -> redis.Redis:
    """A client that fails fast when Redis is away (no hidden retries)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def connect_async(url: str) -> redis.asyncio.Redis:
    """:func:`connect` for coroutines: the same timeouts, no retries."""
    from redis.asyncio.retry import Retry as AsyncRetry

    return redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=AsyncRetry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def _view_of(raw: bytes | None, rules: LiveRules) -> ActorView | None:
    """The view of an actor's stored JSON (None: no key)."""
    if raw is None:
        return None
    return actor_view(ActorState.from_dict(orjson.loads(raw)), rules)


class RedisState(LiveState):
    """Actors in Redis; raises the client's errors (:class:`ResilientState` handles them)."""

    def __init__(self, url: str, rules: LiveRules | None = None, ttl_s: int = STATE_TTL_S):
        self.rules = rules or lr.load_rules()
        self.ttl_s = int(ttl_s)
        self.client = connect(url)

    @property
    def backend(self) -> str:
        return "redis"

    def ping(self) -> bool:
        return bool(self.client.ping())

    def apply(self, events: Sequence[Mapping[str, Any]]) -> list[LiveChange]:
        by_actor = prepare(events)
        if not by_actor:
            return []
        keys = [actor_key(actor_id) for actor_id in by_actor]
        for attempt in range(MAX_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    stored = pipe.mget(keys)
                    changes: list[LiveChange] = []
                    updated = []
                    for (actor_id, prepared), raw in zip(by_actor.items(), stored, strict=True):
                        state = ActorState.from_dict(orjson.loads(raw)) if raw else None
                        state = apply_to_actor(state, actor_id, prepared, self.rules, changes)
                        updated.append(orjson.dumps(state.to_dict()) if state else None)
                    pipe.multi()
                    for key, value in zip(keys, updated, strict=True):
                        if value is None:
                            pipe.delete(key)
                        else:
                            pipe.set(key, value, ex=self.ttl_s)
                    pipe.execute()
                    return changes
                except redis.WatchError:
                    # another process updated one of these actors: apply again on its state
                    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise RuntimeError(f"live state: {MAX_ATTEMPTS} conflicting updates in a row")

    def view(self, actor_id: str) -> ActorView | None:
        return _view_of(self.client.get(actor_key(actor_id)), self.rules)

    def memory_usage(self, actor_id: str) -> int | None:
        """Bytes Redis uses for this actor's key (MEMORY USAGE)."""
        return self.client.memory_usage(actor_key(actor_id), samples=0)

    def close(self) -> None:
        self.client.close()


class ResilientState(LiveState):
    """Redis when it answers, the embedded memory state while it does not (see module doc)."""

    def __init__(
        self,
        url: str,
        rules: LiveRules | None = None,
        *,
        retry_s: float = RETRY_S,
        ttl_s: int = STATE_TTL_S,
        max_outage_events: int = MAX_OUTAGE_EVENTS,
    ) -> None:
        self.rules = rules or lr.load_rules()
        self.retry_s = retry_s
        self.url = url
        self.redis = RedisState(url, self.rules, ttl_s)
        # view_async's client, bound to the event loop it was made in
        self._async_client: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self.memory: MemoryState | None = None
        self._outage: deque[Mapping[str, Any]] = deque(maxlen=max_outage_events)
        self._dropped = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._retry_thread: threading.Thread | None = None
        try:
            self.redis.ping()
        except UNREACHABLE as error:
            self._fall_back(error)

    @property
    def backend(self) -> str:
        return "memory" if self.memory is not None else "redis"

    def apply(self, events: Sequence[Mapping[str, Any]]) -> list[LiveChange]:
        for _ in range(3):  # Redis, else memory; again if Redis came back in between
            if self.memory is None:
                try:
                    return self.redis.apply(events)
                except UNREACHABLE as error:
                    self._fall_back(error)
            with self._lock:
                if self.memory is not None:
                    self._keep(events)
                    return self.memory.apply(events)
        raise RuntimeError("live state: closed, or Redis flapping faster than one batch")

    def view(self, actor_id: str) -> ActorView | None:
        memory = self.memory
        if memory is None:
            try:
                return self.redis.view(actor_id)
            except UNREACHABLE as error:
                self._fall_back(error)
                memory = self.memory
        return memory.view(actor_id) if memory is not None else self.redis.view(actor_id)

    async def view_async(self, actor_id: str) -> ActorView | None:
        """:meth:`view` for a coroutine (the recommendation routes): the Redis read is
        awaited in the running event loop, no hop to a thread and back. While Redis is
        away, or when this read fails, :meth:`view` in a thread (it falls back as ever)."""
        if self.memory is None:
            try:
                raw = await self._loop_client().get(actor_key(actor_id))
            except UNREACHABLE:
                pass
            else:
                return _view_of(raw, self.rules)
        return await asyncio.to_thread(self.view, actor_id)

    def _loop_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        held = self._async_client
        if held is None or held[0] is not loop:
            held = self._async_client = (loop, connect_async(self.url))
        return held[1]

    def restore(self, events: Sequence[Mapping[str, Any]]) -> None:
        """A rebuild: into the embedded state while Redis is away (not replayed later:
        Redis took these events in when they arrived); nothing while Redis serves."""
        with self._lock:
            memory = self.memory
        if memory is not None:
            memory.restore(events)

    def close(self) -> None:
        self._closed.set()
        thread = self._retry_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.retry_s + 5)
        self.redis.close()
        held, self._async_client = self._async_client, None
        if held is not None and not held[0].is_closed():
            loop, closing = held[0], held[1].aclose()
            try:  # closed in its own loop, which still runs
                asyncio.run_coroutine_threadsafe(closing, loop)
            except RuntimeError:
                closing.close()

    def _keep(self, events: Sequence[Mapping[str, Any]]) -> None:
        room = self._outage.maxlen - len(self._outage)
        if len(events) > room:
            if not self._dropped:
                logger.warning(
                    "live state: more than %d events during the Redis outage; "
                    "the oldest will not be replayed into Redis",
                    self._outage.maxlen,
                )
            self._dropped += len(events) - room
        self._outage.extend(events)

    def _fall_back(self, error: BaseException) -> None:
        with self._lock:
            if self.memory is not None or self._closed.is_set():
                return
            logger.warning(
                "live state: Redis unreachable (%s); using the in-process state and "
                "retrying every %.1f s",
                type(error).__name__,
                self.retry_s,
            )
            self.memory = MemoryState(self.rules)
            self._retry_thread = threading.Thread(
                target=self._retry_loop, name="live-state-redis-retry", daemon=True
            )
            self._retry_thread.start()

    def _retry_loop(self) -> None:
        while not self._closed.wait(self.retry_s):
            try:
                self.redis.ping()
                if self._replay():
                    return
            except UNREACHABLE:
                continue
            except Exception as error:  # noqa: BLE001 - the thread must outlive a bad replay
                logger.warning("live state: replay into Redis failed (%s)", type(error).__name__)

    def _replay(self) -> bool:
        """Replay the kept events into Redis; True once Redis serves again."""
        replayed = 0
        while True:
            with self._lock:
                if not self._outage:
                    self.memory = None
                    dropped, self._dropped = self._dropped, 0
                    logger.warning(
                        "live state: Redis is back; %d events of the outage replayed "
                        "into it (%d dropped)",
                        replayed,
                        dropped,
                    )
                    return True
                chunk = [
                    self._outage.popleft() for _ in range(min(REPLAY_CHUNK, len(self._outage)))
                ]
            try:
                self.redis.apply(chunk)
            except UNREACHABLE:
                with self._lock:
                    self._outage.extendleft(reversed(chunk))
                raise
            replayed += len(chunk)
