"""Event durability and users' live histories: fsync'd append-only log, store sync, in-memory state.

An event batch is acknowledged only after its lines are written and fsync'd to the
log, so a `kill -9` right after the 2xx loses nothing; the log is replayed into the
store (which dedupes on event_id) at start and copied there in the background. Several
server workers share one log: each append holds an exclusive `flock` on a sidecar lock
file, follows the log to a new inode after another worker compacted it, and starts on a
fresh line after a worker killed mid-write left a torn one. The
store file is opened only briefly, so other soutui commands can still use it. A re-import of
the dataset under a running server replaces its events, so the sync then copies the whole
log in again; forgetting a user compacts the log, so a replay cannot restore them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.store import open_store

log = logging.getLogger(__name__)

INTERACTIONS = ("view", "click", "cart", "purchase")
FUTURE_SLACK_S = 86_400  # like the importer: one day of clock skew, no more
RECHECK_S = 30.0  # an idle server looks for a re-import of its dataset this often


class EventLog:
    """Append-only JSON-lines file; `append` returns only after the data is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "ab+")  # noqa: SIM115 - held open for the server's life (+: reads its last byte)
        self._flock = open(self.path.with_name(self.path.name + ".lock"), "ab")  # noqa: SIM115 - across processes
        self.seen: set[str] = set()

    def replay(self) -> list[dict[str, Any]]:
        """Every complete record in the log (a torn last line from a crash is skipped)."""
        records: list[dict[str, Any]] = []
        for rec in self.replay_all():
            if rec.get("event_id") not in self.seen:
                self.seen.add(rec["event_id"])
                records.append(rec)
        return records

    def replay_all(self) -> list[dict[str, Any]]:
        """Every complete record in the log, duplicates included; `seen` is left alone."""
        records: list[dict[str, Any]] = []
        with open(self.path, "rb") as fh:
            for line in fh:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("skipping a torn line in %s", self.path)
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
                fcntl.flock(self._flock, fcntl.LOCK_EX)  # other workers append to the same file
                try:
                    self._follow()
                    if self._fh.tell() > 0 and os.pread(self._fh.fileno(), 1, self._fh.tell() - 1) != b"\n":
                        data = b"\n" + data  # a worker killed mid-write left a torn line: do not extend it
                    self._fh.write(data)
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                finally:
                    fcntl.flock(self._flock, fcntl.LOCK_UN)
                self.seen |= ids
            return fresh

    def remember(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Mark records another worker logged as seen; returns those not seen before."""
        with self._lock:
            fresh = [r for r in records if r.get("event_id") not in self.seen]
            self.seen.update(r["event_id"] for r in fresh)
            return fresh

    def _follow(self) -> None:
        """Reopen the log if another worker replaced it (compaction), and seek to its end."""
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self._fh.fileno()).st_ino
        except FileNotFoundError:
            replaced = True
        if replaced:
            self._fh.close()
            self._fh = open(self.path, "ab+")  # noqa: SIM115 - held open for the server's life (+: reads its last byte)
        self._fh.seek(0, os.SEEK_END)

    def drop_user(self, user_id: str) -> set[str]:
        """Compact the log without `user_id`'s records (forgetting: replay must not restore them).

        The survivors go to a new file, fsync'd, then atomically replace the log, so a crash
        leaves either the old log or the compacted one. Returns the dropped event ids."""
        with self._lock:
            fcntl.flock(self._flock, fcntl.LOCK_EX)
            try:
                return self._compact_without(user_id)
            finally:
                fcntl.flock(self._flock, fcntl.LOCK_UN)

    def _compact_without(self, user_id: str) -> set[str]:
        self._fh.close()
        kept: list[bytes] = []
        dropped: set[str] = set()
        with open(self.path, "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line: replay skips it anyway
                if isinstance(rec, dict) and str(rec.get("user_id")) == user_id:
                    dropped.add(str(rec.get("event_id")))
                else:
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
        tmp = self.path.with_name(self.path.name + ".compact")
        with open(tmp, "wb") as out:
            out.write(b"".join(kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._fh = open(self.path, "ab+")  # noqa: SIM115 - held open for the server's life (+: reads its last byte)
        self.seen -= dropped
        return dropped

    def close(self) -> None:
        self._fh.close()
        self._flock.close()


class StoreSync:
    """Copies logged events into the store in the background (idempotent: the store dedupes)."""

    def __init__(
        self, store_url: str | None, dataset: str, interval_s: float, event_log: EventLog | None = None
    ) -> None:
        self.store_url, self.dataset, self.interval_s = store_url, dataset, interval_s
        self.log = event_log  # re-read in full when the dataset was re-imported under the server
        self.imported: str | None = None  # the dataset's import stamp when last synced
        # called with the open store on each sync; returns users forgotten there by another process
        self.on_check: Callable[[Any], set[str]] | None = None
        self._checked = time.monotonic()
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.io_lock = threading.Lock()  # one store write at a time (forgetting holds it too)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warned = False

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(records)

    def drop_user(self, user_id: str) -> None:
        """Forget the user's events not yet copied (the caller holds `io_lock`)."""
        with self._lock:
            self._pending = [r for r in self._pending if str(r.get("user_id")) != user_id]

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="soutui-store-sync", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        with self.io_lock:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
        check = self.log is not None and time.monotonic() - self._checked > RECHECK_S
        if not batch and not check:
            return 0
        try:
            store = open_store(self.store_url)
            try:
                gone = self.on_check(store) if self.on_check else set()
                if gone:  # `soutui data forget` ran meanwhile: their waiting events go too
                    batch = [r for r in batch if str(r.get("user_id")) not in gone]
                stamp = import_stamp(store, self.dataset)
                self._checked = time.monotonic()
                if self.log is not None and self.imported is not None and stamp != self.imported:
                    # re-imported while we serve: the import replaced the synced live events; restore them
                    log.info("dataset %s was re-imported; copying the event log into it again", self.dataset)
                    batch = self.log.replay_all() + batch
                self.imported = stamp
                return store.append_events(self.dataset, pd.DataFrame(batch)) if batch else 0
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
            horizon = now_s() + FUTURE_SLACK_S  # an event dated 2100 must not empty the trending window
            if rows:
                self.latest_ts = max(self.latest_ts, max((r[3] for r in rows if r[3] <= horizon), default=0))
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

    def forget(self, user_id: str) -> int:
        """Drop the user's history, purchases and their share of the item counts; returns events dropped."""
        with self._lock:
            dq = self.recent.pop(user_id, None) or deque()
            self.purchased.pop(user_id, None)
            cutoff = self.latest_ts - self.window_s
            for item, _, ts in dq:
                self.all_counts[item] -= 1
                if ts >= cutoff or ts == 0:
                    self.counts[item] -= 1
            self.all_counts += Counter()  # drops the counts that fell to zero
            self.counts += Counter()
            return len(dq)

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


def import_stamp(store: Any, dataset: str) -> str | None:
    """What changes when the dataset is (re-)imported: its metadata (import time, report)."""
    try:
        meta = store.meta(dataset)
    except Exception:
        return None
    return json.dumps(meta, sort_keys=True) if meta else None
