"""Many processes on one PostgreSQL store: exactly-once ingest, and imports that block no one.

Runs on the session's throwaway server (tests/pg_server.py); skipped only without Debian's
postgresql binaries.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import subprocess
import sys
import threading
import time
from typing import Any

import pandas as pd
import psycopg
import pytest

from soutui.data.store import open_store

N_PROCS = 4
N_EVENTS = 1_200
BATCH = 60


def _universe() -> list[dict[str, Any]]:
    """The events every process posts; every 10th has no id, so its content id must agree across processes."""
    return [
        {"event_id": None if k % 10 == 0 else f"e{k}", "user_id": f"u{k % 37}", "item_id": f"i{k % 101}",
         "event_type": "view", "session_id": f"s{k % 53}", "ts": 1_700_000_000 + k}
        for k in range(N_EVENTS)
    ]  # fmt: skip


def _poster(url: str, seed: int, start: Any, results: Any) -> None:
    """One process: all of the universe plus repeats, in its own order and batch cuts, through the store API."""
    rng = random.Random(seed)
    rows = _universe() + rng.sample(_universe(), N_EVENTS // 4)  # re-posts inside the same process too
    rng.shuffle(rows)
    store = open_store(url)
    start.wait()  # all four begin together
    new = 0
    for at in range(0, len(rows), BATCH):
        new += store.append_events("shop", pd.DataFrame(rows[at : at + BATCH]))
    store.close()
    results.put((seed, new))


def test_four_processes_post_overlapping_batches_each_event_stored_once(pg_url: str) -> None:
    store = open_store(pg_url)
    store.write_dataset("shop", {"events": pd.DataFrame({"event_id": ["seed"], "user_id": ["u"], "ts": [1]})})
    ctx = mp.get_context("spawn")  # no inherited pool threads or sockets
    start, results = ctx.Barrier(N_PROCS), ctx.Queue()
    procs = [ctx.Process(target=_poster, args=(pg_url, seed, start, results)) for seed in range(N_PROCS)]
    for p in procs:
        p.start()
    got = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    try:
        stored = store.read("shop", "events")
    finally:
        store.close()
    assert len(stored) == 1 + N_EVENTS and not stored["event_id"].duplicated().any()
    assert set(stored["ts"]) == {1} | {1_700_000_000 + k for k in range(N_EVENTS)}  # every event is there
    assert sum(new for _, new in got) == N_EVENTS  # and each was counted new by exactly one process
    assert all(new < N_EVENTS for _, new in got), "the processes should have raced, not run one after another"


IMPORTER = """
import sys, time
import pandas as pd
from soutui.data.store import open_store
n = int(sys.argv[2])
ev = pd.DataFrame({"event_id": [f"new{k}" for k in range(n)], "user_id": "u", "item_id": [f"i{k}" for k in range(n)],
                   "event_type": "view", "ts": 1_700_000_000})
store = open_store(sys.argv[1])
print("writing", flush=True)
t = time.monotonic()
store.write_dataset("shop", {"events": ev}, replace=True)
print(f"done {time.monotonic() - t:.3f}", flush=True)
"""


def _old_events(n: int) -> dict[str, pd.DataFrame]:
    return {"events": pd.DataFrame({"event_id": [f"old{k}" for k in range(n)], "user_id": "u", "ts": list(range(n))})}


def test_import_and_server_do_not_block_each_other(pg_url: str) -> None:
    """While another process imports a large dataset, reads see the old dataset whole and appends go
    through, each within a moment; a reader holding a transaction open does not stop the import."""
    store = open_store(pg_url)
    store.write_dataset("shop", _old_events(1_000))
    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, pg_url, "150000"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    waits, seen, k = [], set(), 0
    try:
        while proc.poll() is None:
            t = time.monotonic()
            ids = store.read("shop", "events")["event_id"]
            n = int(ids.str.startswith("new").sum())
            if n == 0:  # reading all of the new dataset takes its own time: not a wait
                waits.append(time.monotonic() - t)
            t = time.monotonic()
            assert store.append_events("shop", pd.DataFrame({"event_id": [f"live{k}"], "user_id": "v", "ts": [k]})) == 1
            waits.append(time.monotonic() - t)
            seen.add(n)
            k += 1
            time.sleep(0.05)
        out = proc.stdout.read()
    finally:
        proc.kill()
    import_s = float(out.split()[-1])
    assert "done" in out and k >= 1, out
    assert max(waits) < 1.0, (max(waits), import_s)
    if import_s > 1.5:  # long enough to tell waiting from not waiting (it is on this machine: ~3-6 s)
        assert max(waits) < import_s / 3, (max(waits), import_s)
    assert seen <= {0, 150_000} and 0 in seen  # the old dataset, or all of the new one: never a part
    after = store.read("shop", "events")["event_id"]
    assert after.str.startswith("new").sum() == 150_000 and not after.str.startswith("old").any()
    # a reader in the middle of a long transaction (a slow export, say) does not stop an import either
    with psycopg.connect(pg_url) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        before = reader.execute("SELECT count(*) FROM soutui_events").fetchone()
        t = time.monotonic()
        store.write_dataset("shop", _old_events(2_000), replace=True)
        assert time.monotonic() - t < 30
        assert reader.execute("SELECT count(*) FROM soutui_events").fetchone() == before  # its snapshot holds
        reader.rollback()
    assert len(store.read("shop", "events")) == 2_000
    store.close()


def test_concurrent_first_opens_migrate_once(pg_url: str) -> None:
    """Several processes opening an empty database at once: each migration is applied exactly once."""
    code = "import sys; from soutui.data.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 3
    with psycopg.connect(pg_url) as con:
        versions = [r[0] for r in con.execute("SELECT version FROM soutui_schema_version ORDER BY version")]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_import_racing_a_live_append_of_the_same_event_keeps_it_once(pg_url: str) -> None:
    """A live append (here held open by hand) commits an event id the import also writes: the
    import's fast COPY fails on the duplicate and falls back to INSERT ... ON CONFLICT, keeping it once."""
    store = open_store(pg_url)
    store.write_dataset("shop", _old_events(10))
    new = {"events": pd.DataFrame({"event_id": [f"new{k}" for k in range(20)], "user_id": "u", "ts": list(range(20))})}
    with psycopg.connect(pg_url) as live:  # a transaction left open, like an append in flight
        live.execute("INSERT INTO soutui_events (dataset, event_id, user_id, ts) VALUES ('shop', 'new5', 'live', 99)")
        errors: list[BaseException] = []

        def run() -> None:
            try:
                store.write_dataset("shop", new, replace=True)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        importer = threading.Thread(target=run)
        importer.start()
        time.sleep(1.0)
        assert importer.is_alive(), "the import should wait for the open append, not finish around it"
        live.commit()
        importer.join(timeout=60)
    assert not importer.is_alive() and not errors, errors
    events = store.read("shop", "events")
    store.close()
    assert sorted(events["event_id"]) == sorted(f"new{k}" for k in range(20))  # once each, no old rows
    assert events.set_index("event_id").loc["new5", "user_id"] == "live"  # the committed append was kept


def test_forget_during_an_import_answers_retry_within_moments(pg_url: str) -> None:
    """An import of the dataset is running (its lock held, as write_dataset holds it): forgetting a
    user there fails fast with StoreLockedError, deleting nothing (the server answers 503 "retry"),
    instead of waiting for the import; once the import is done it goes through."""
    from soutui.data.postgres_store import FORGET_WAIT_S
    from soutui.data.store import StoreLockedError

    store = open_store(pg_url)
    store.write_dataset("shop", _old_events(10))
    with psycopg.connect(pg_url) as importer:
        importer.execute("SELECT pg_advisory_xact_lock(hashtext('soutui_dataset:shop'))")  # what an import holds
        t = time.monotonic()
        with pytest.raises(StoreLockedError, match="being imported.*nothing was deleted, retry"):
            store.forget_user("shop", "u")
        assert time.monotonic() - t < FORGET_WAIT_S + 5
        assert len(store.read("shop", "events")) == 10 and store.pending_forget("shop") == []
        importer.rollback()
    assert store.forget_user("shop", "u")["events"] == 10
    store.close()


def test_append_waits_on_a_running_import_only_for_its_rows_and_only_briefly(pg_url: str) -> None:
    """The import's uncommitted DELETE locks the old rows: a replayed (already stored) event id waits for
    it at most APPEND_WAIT_S, then StoreLockedError appends nothing (the server keeps it in its log and
    retries); a new event id goes straight through."""
    from soutui.data.postgres_store import APPEND_WAIT_S
    from soutui.data.store import StoreLockedError

    store = open_store(pg_url)
    store.write_dataset("shop", _old_events(10))
    with psycopg.connect(pg_url) as importer:
        importer.execute("DELETE FROM soutui_events WHERE dataset = 'shop'")  # what a running import did first
        t = time.monotonic()
        assert store.append_events("shop", pd.DataFrame({"event_id": ["fresh"], "user_id": "v", "ts": [1]})) == 1
        assert time.monotonic() - t < 1.0
        t = time.monotonic()
        with pytest.raises(StoreLockedError, match="being imported.*retry"):
            store.append_events("shop", pd.DataFrame({"event_id": ["old3", "replay"], "user_id": "v", "ts": [1, 2]}))
        assert APPEND_WAIT_S - 0.5 < time.monotonic() - t < APPEND_WAIT_S + 5
        importer.rollback()  # the import failed: the old rows are back
    assert store.append_events("shop", pd.DataFrame({"event_id": ["old3", "replay"], "user_id": "v", "ts": [1, 2]})) == 1
    assert len(store.read("shop", "events")) == 12
    store.close()
