"""Event durability and users' live histories: fsync'd append-only log, store sync, in-memory state.

An event batch is acknowledged only after its lines are written and fsync'd to the
log, so a `kill -9` right after the 2xx loses nothing; the log is replayed into the
store (which dedupes on event_id) at start and copied there in the background. The
store file is opened only briefly, so other soutui commands can still use it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.store import open_store

log = logging.getLogger(__name__)

INTERACTIONS = ("view", "click", "cart", "purchase")


class EventLog:
    """Append-only JSON-lines file; `append` returns only after the data is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the server's life
        self.seen: set[str] = set()

    def replay(self) -> list[dict[str, Any]]:
        """Every complete record in the log (a torn last line from a crash is skipped)."""
        records: list[dict[str, Any]] = []
        with open(self.path, "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("skipping a torn line in %s", self.path)
                    continue
                if rec.get("event_id") not in self.seen:
                    self.seen.add(rec["event_id"])
                    records.append(rec)
        return records

    def append(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the records whose event_id is new, fsync, and return them."""
        with self._lock:
            fresh: list[dict[str, Any]] = []
            ids: set[str] = set()
            for r in records:
                if r["event_id"] not in self.seen and r["event_id"] not in ids:
                    ids.add(r["event_id"])
                    fresh.append(r)
            if fresh:
                data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in fresh)
                self._fh.write(data)
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self.seen |= ids
            return fresh

    def close(self) -> None:
        self._fh.close()


class StoreSync:
    """Copies logged events into the store in the background (idempotent: the store dedupes)."""

    def __init__(self, store_url: str | None, dataset: str, interval_s: float) -> None:
        self.store_url, self.dataset, self.interval_s = store_url, dataset, interval_s
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warned = False

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(records)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="soutui-store-sync", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            store = open_store(self.store_url)
            try:
                return store.append_events(self.dataset, pd.DataFrame(batch))
            finally:
                store.close()
        except Exception as exc:  # store busy or missing: the log still holds the events
            if not self.warned:
                log.warning("could not copy events into the store (%s); they stay in the event log", exc)
                self.warned = True
            with self._lock:
                self._pending = batch + self._pending
            return 0

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.flush()


class Histories:
    """Per-user recent (item_id, event_type, ts) and purchases, plus windowed item counts for trending.

    Each event keeps its timestamp, so a time-aware model is served the same (history, times)
    the offline protocol scores it with."""

    def __init__(self, max_len: int, trending_days: int) -> None:
        self.max_len = max_len
        self.window_s = trending_days * 86400
        self.recent: dict[str, deque[tuple[str, str, int]]] = {}
        self.purchased: dict[str, set[str]] = {}
        self.counts: Counter[str] = Counter()  # events per item inside the trending window
        self.all_counts: Counter[str] = Counter()
        self.latest_ts = 0
        self._lock = threading.Lock()

    def load_frame(self, events: pd.DataFrame) -> None:
        """Bulk-load the store's events (oldest first per user)."""
        ev = events[events["event_type"].isin(INTERACTIONS) & events["item_id"].notna() & events["user_id"].notna()]
        ts = ev["ts"].fillna(0).astype("int64").to_numpy()
        ev = ev.assign(_ts=ts, _o=np.arange(len(ev))).sort_values(["_ts", "_o"], kind="stable")
        users = ev["user_id"].astype(str).tolist()
        items = ev["item_id"].astype(str).tolist()
        types = ev["event_type"].astype(str).tolist()
        stamps = ev["_ts"].tolist()
        self.add_many(list(zip(users, items, types, stamps, strict=True)))

    def add_many(self, rows: list[tuple[str, str, str, int]]) -> None:
        with self._lock:
            if rows:
                self.latest_ts = max(self.latest_ts, max(r[3] for r in rows))
            cutoff = self.latest_ts - self.window_s
            for user, item, etype, ts in rows:
                dq = self.recent.get(user)
                if dq is None:
                    dq = self.recent[user] = deque(maxlen=self.max_len)
                dq.append((item, etype, ts))
                if etype == "purchase":
                    self.purchased.setdefault(user, set()).add(item)
                self.all_counts[item] += 1
                if ts >= cutoff or ts == 0:
                    self.counts[item] += 1

    def add_records(self, records: list[dict[str, Any]]) -> None:
        rows = [
            (str(r["user_id"]), str(r["item_id"]), str(r["event_type"]), int(r.get("ts") or 0))
            for r in records
            if r.get("item_id") and r.get("user_id") and r.get("event_type") in INTERACTIONS
        ]
        self.add_many(rows)

    def user(self, user_id: str) -> tuple[list[tuple[str, str, int]], set[str]]:
        """The user's recent (item_id, event_type, unix seconds; 0 = unknown), oldest first, and purchases."""
        with self._lock:
            dq = self.recent.get(user_id)
            return (list(dq) if dq else []), set(self.purchased.get(user_id, ()))

    def trending_vector(self, index: dict[str, int], n_items: int) -> np.ndarray:
        """Windowed counts (+ a small all-time term to order the long tail) over a catalogue."""
        vec = np.zeros(n_items, np.float64)
        with self._lock:
            for item, c in self.all_counts.items():
                i = index.get(item)
                if i is not None:
                    vec[i] = 1e-3 * c + self.counts.get(item, 0)
        return vec


def now_s() -> int:
    return int(time.time())
