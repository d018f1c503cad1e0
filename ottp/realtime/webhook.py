"""Delivery of live-fired triggers: the CRM target's ``crm_live_triggers`` table and a webhook.

:class:`Delivery` takes the triggers the engine recorded (``ottp.realtime.triggers``;
suppressed ones never reach it) and delivers each, in a background thread, to:

- the CRM target of ``ottp sync`` (``ottp.crm.targets.target_from_url``: SQLite by
  default, PostgreSQL with ``CRM_DATABASE_URL``): table ``crm_live_triggers`` with
  ``crm_triggers``' columns (not its row hash), created if missing, inserted once per ``trigger_id``
  (a repeat is ignored by the primary key);
- the webhook ``OTTP_WEBHOOK_URL``, when set: a ``POST`` of the trigger as JSON with
  ``X-OTTP-Timestamp`` (Unix seconds) and ``X-OTTP-Signature: sha256=<hex>``, the
  HMAC-SHA256 of ``<timestamp>.<body>`` with ``OTTP_WEBHOOK_SECRET``. A 2xx answer
  delivers it; anything else is retried with exponential backoff, up to
  ``attempts`` tries, then given up (logged, without any personal data).

Delivery state lives in this process only: a trigger still queued or being retried
when the process stops is not delivered by this path (it is in the ledger, so the
CRM gets it through ``crm_triggers`` at the next sync).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ottp import config
from ottp.crm.contract import TABLES_BY_NAME, quote
from ottp.crm.targets import Target, ddl, target_from_url, to_target_timestamp

logger = logging.getLogger(__name__)

TABLE = "crm_live_triggers"
SPEC = TABLES_BY_NAME["crm_triggers"]
# crm_triggers' columns without the row hash, which only the batch sync's diff reads
LIVE_COLUMNS = tuple(SPEC.hashed_columns)
COLUMNS = tuple(c.name for c in LIVE_COLUMNS)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``: what X-OTTP-Signature holds."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def payload(trigger: dict[str, Any]) -> bytes:
    """The webhook body: the trigger's crm_triggers columns as one JSON object."""
    return json.dumps({c: trigger.get(c) for c in COLUMNS}, separators=(",", ":")).encode()


class CrmWriter:
    """Inserts triggers once into the CRM target's crm_live_triggers."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._ready = False

    def _qualified(self) -> str:
        schema = getattr(self.target, "schema", None)
        return f"{quote(schema)}.{quote(TABLE)}" if schema else quote(TABLE)

    def insert(self, triggers: list[dict[str, Any]]) -> None:
        kind = self.target.kind
        qualified = self._qualified()
        cols = [(c.name, c.type, c.nullable and c.name not in SPEC.key) for c in LIVE_COLUMNS]
        mark = "?" if kind == "sqlite" else "%s"
        conflict = "insert or ignore into" if kind == "sqlite" else "insert into"
        tail = "" if kind == "sqlite" else " on conflict (trigger_id) do nothing"
        sql = (
            f"{conflict} {qualified} ({', '.join(quote(c) for c in COLUMNS)}) "
            f"values ({', '.join(mark for _ in COLUMNS)}){tail}"
        )
        rows = [tuple(self._value(t, c, kind) for c in LIVE_COLUMNS) for t in triggers]
        con = self.target.connect()
        try:
            cur = con.cursor()
            if not self._ready:
                if kind != "sqlite":
                    cur.execute(f"create schema if not exists {quote(self.target.schema)}")
                cur.execute(ddl(kind, qualified, cols, SPEC.key))
            cur.executemany(sql, rows)
            if kind != "sqlite":
                con.commit()
            self._ready = True
        finally:
            con.close()

    @staticmethod
    def _value(trigger: dict[str, Any], column, kind: str):
        value = trigger.get(column.name)
        if value is None:
            return None
        if column.type == "timestamp":
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            return to_target_timestamp(moment, kind)
        if column.type == "boolean" and kind == "sqlite":
            return int(bool(value))
        return value


class Delivery:
    """A background thread that delivers each trigger to the CRM table and the webhook."""

    def __init__(
        self,
        rt: config.RealtimeSettings,
        *,
        target: Target | None = None,
        attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.webhook_url = rt.webhook_url
        self.webhook_secret = rt.webhook_secret or ""
        self.crm = CrmWriter(target or target_from_url())
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._heap: list[tuple[float, int, str, int, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="trigger-delivery", daemon=True)
        # counts, for /health and the tests: (sink, outcome) -> n
        self.counts: dict[tuple[str, str], int] = {}

    def start(self) -> Delivery:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; what is still queued is dropped (see the module docstring)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def submit(self, triggers: list[dict[str, Any]]) -> None:
        """Queue delivery of recorded, non-suppressed triggers."""
        if not triggers:
            return
        now = self._clock()
        with self._cond:
            heapq.heappush(self._heap, (now, next(self._seq), "crm", 1, list(triggers)))
            if self.webhook_url:
                for t in triggers:
                    heapq.heappush(self._heap, (now, next(self._seq), "webhook", 1, t))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _count(self, sink: str, outcome: str) -> None:
        key = (sink, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > self._clock()):
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, _, sink, attempt, item = heapq.heappop(self._heap)
            self._attempt(sink, attempt, item)

    def _attempt(self, sink: str, attempt: int, item: Any) -> None:
        try:
            if sink == "crm":
                self.crm.insert(item)
            else:
                self._post(item)
        except Exception as exc:  # any failure: retried, then given up; no ids in the log
            if attempt >= self.attempts:
                self._count(sink, "given_up")
                logger.error(
                    "live trigger delivery to %s given up after %d attempts (%s)",
                    sink,
                    attempt,
                    type(exc).__name__,
                )
                return
            delay = min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)
            self._count(sink, "retried")
            logger.warning(
                "live trigger delivery to %s failed (%s), attempt %d; retry in %.1f s",
                sink,
                type(exc).__name__,
                attempt,
                delay,
            )
            with self._cond:
                heapq.heappush(
                    self._heap, (self._clock() + delay, next(self._seq), sink, attempt + 1, item)
                )
                self._cond.notify()
            return
        self._count(sink, "delivered")

    def _post(self, trigger: dict[str, Any]) -> None:
        body = payload(trigger)
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-OTTP-Timestamp": timestamp,
                "X-OTTP-Signature": sign(self.webhook_secret, timestamp, body),
            },
        )
        # urlopen raises HTTPError for a status outside 2xx/3xx
        with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
            if not 200 <= answer.status < 300:
                raise urllib.error.HTTPError(
                    self.webhook_url, answer.status, "not delivered", answer.headers, None
                )
