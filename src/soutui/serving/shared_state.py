"""Real-time state shared by serving workers: PostgreSQL LISTEN/NOTIFY as the bus.

Each worker keeps its own in-memory histories and trending counts (reads stay local and
fast). What one worker changes, it announces on the bus before it answers: accepted
events (after they are fsync'd to the event log), a swapped bundle, a forgotten user.
Every other worker applies the message on a listener thread, typically within a few ms.

Why PostgreSQL and not Redis: several workers need a store that many processes write,
i.e. PostgreSQL, so the bus costs no second server to run, secure and monitor. NOTIFY
payloads are small (< 8000 bytes), so events travel as compact tuples in chunks.
A worker listens *before* it loads the store and the log, and buffers what arrives until
it has loaded (`open_gate`), so nothing falls between the load and the first message.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PAYLOAD_LIMIT = 7000  # bytes per NOTIFY (PostgreSQL refuses payloads of 8000 bytes or more)
RECONNECT_S = 1.0
EVENT_FIELDS = ("event_id", "user_id", "item_id", "event_type", "ts")

Handler = Callable[[dict[str, Any]], None]


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in ("postgresql", "postgres")


def channel_for(dataset: str) -> str:
    """One channel per served dataset: servers of the same dataset on the same database share state."""
    return ("soutui_" + dataset.replace("-", "_"))[:63]


class SharedState:
    """Publish to and listen on one NOTIFY channel; messages are JSON dicts with a kind `k`.

    Messages this worker sent come back to it too; they are dropped by worker id."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self.worker = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.received = 0
        self._handler: Handler | None = None
        self._buffer: list[dict[str, Any]] = []
        self._gate = threading.Lock()  # orders buffering against open_gate
        self._pub: Any = None
        self._pub_lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen_forever, name="soutui-shared-state", daemon=True)

    # --- listening ---------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start listening; waits (up to `timeout`) until LISTEN is in place, so a load that
        follows cannot miss a message sent meanwhile."""
        self._thread.start()
        if not self._listening.wait(timeout):
            log.warning("shared state: not listening on %s yet; will keep trying", self.channel)

    def open_gate(self, handler: Handler) -> None:
        """Deliver what arrived while loading, then every later message, to `handler`."""
        with self._gate:
            buffered, self._buffer = self._buffer, []
            for msg in buffered:
                self._deliver(handler, msg)
            self._handler = handler

    def _listen_forever(self) -> None:
        import psycopg
        from psycopg import sql

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_payload(note.payload)
            except Exception as exc:  # server restart, network: reconnect; messages meanwhile are lost
                if self._stop.is_set():
                    return
                log.warning("shared state: listener lost %s (%s); reconnecting", self.channel, exc)
                self._stop.wait(RECONNECT_S)

    def _on_payload(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
        except json.JSONDecodeError:
            log.warning("shared state: dropped a message that is not JSON")
            return
        if not isinstance(msg, dict) or msg.get("w") == self.worker:
            return
        with self._gate:
            if self._handler is None:
                self._buffer.append(msg)
                return
            handler = self._handler
        self._deliver(handler, msg)

    def _deliver(self, handler: Handler, msg: dict[str, Any]) -> None:
        self.received += 1
        try:
            handler(msg)
        except Exception:  # one bad message must not stop the listener
            log.exception("shared state: failed to apply a %r message", msg.get("k"))

    # --- publishing ----------------------------------------------------------------
    def publish(self, kind: str, **body: Any) -> bool:
        """Send one message; False (and a warning) when the bus is down: the caller's change
        stands locally (events are in the log and reach the store), other workers miss it."""
        return self._send([json.dumps({"w": self.worker, "k": kind, **body}, ensure_ascii=False)])

    def publish_events(self, records: list[dict[str, Any]]) -> bool:
        """Accepted events as tuples (EVENT_FIELDS), chunked under the NOTIFY payload limit."""
        rows = [[r.get(f) for f in EVENT_FIELDS] for r in records]
        payloads: list[str] = []
        chunk: list[list[Any]] = []
        size = 0
        for row in rows:
            n = len(json.dumps(row, ensure_ascii=False).encode()) + 1
            if chunk and size + n > PAYLOAD_LIMIT:
                payloads.append(self._events_payload(chunk))
                chunk, size = [], 0
            chunk.append(row)
            size += n
        if chunk:
            payloads.append(self._events_payload(chunk))
        return self._send(payloads)

    def _events_payload(self, rows: list[list[Any]]) -> str:
        return json.dumps({"w": self.worker, "k": "events", "r": rows}, ensure_ascii=False)

    def _send(self, payloads: list[str]) -> bool:
        import psycopg

        with self._pub_lock:
            for attempt in (0, 1):  # one reconnect: the server may have restarted since the last send
                try:
                    if self._pub is None or self._pub.closed:
                        self._pub = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    with self._pub.transaction():  # all chunks of one batch arrive together, or none
                        for p in payloads:
                            self._pub.execute("SELECT pg_notify(%s, %s)", (self.channel, p))
                    return True
                except Exception as exc:
                    self._pub = None
                    if attempt:
                        log.warning("shared state: could not publish on %s (%s)", self.channel, exc)
        return False

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._pub_lock:
            if self._pub is not None:
                self._pub.close()
                self._pub = None


def records_from(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """Event tuples of an `events` message back into records."""
    return [dict(zip(EVENT_FIELDS, row, strict=True)) for row in rows if len(row) == len(EVENT_FIELDS)]
