"""Many serving workers (issue 13 §2): `soutui serve --workers 2 --store postgresql://...` as real
processes on a real PostgreSQL server (tests/pg_server.py), plus the pieces they rest on: the
LISTEN/NOTIFY bus (serving/shared_state.py) and one event log appended by several processes.

Which worker answered is read from the `X-Soutui-Worker` header (its pid); every request opens a
new connection, so the kernel hands requests to both workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pg_server import PgServer
from serving_shop import (
    API_KEY,
    WORKER,
    build_shop_bundle,
    free_port,
    shop_database,
    start_server,
    wait_workers,
    write_config,
)

from soutui.config import ConfigError
from soutui.data.store import open_store
from soutui.serving.events import EventLog
from soutui.serving.settings import ServeSettings
from soutui.serving.shared_state import PAYLOAD_LIMIT, SharedState, records_from

H = {"X-API-Key": API_KEY}


# --- the pieces ----------------------------------------------------------------------


def test_more_than_one_worker_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        ServeSettings(workers=2, store=f"duckdb://{tmp_path / 's.duckdb'}")
    with pytest.raises(ConfigError, match="postgresql://"):
        ServeSettings(workers=2)  # the default store is DuckDB too
    assert ServeSettings(workers=2, store="postgresql://u@h/db").workers == 2
    with pytest.raises(ConfigError, match="workers"):
        ServeSettings(workers=0)


def test_serve_workers_on_duckdb_exits_with_a_message_saying_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from soutui.cli import main

    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path))
    assert main(["serve", "--workers", "2"]) == 2  # refused before any bundle or store is opened
    err = capsys.readouterr().err
    assert "--workers 2" in err and "postgresql://" in err and "one writer" in err


def test_bus_delivers_every_event_of_a_big_batch_to_the_other_worker_only(pg_url: str) -> None:
    a, b = SharedState(pg_url, "soutui_t"), SharedState(pg_url, "soutui_t")
    got_a: list[dict[str, Any]] = []
    got_b: list[dict[str, Any]] = []
    done = threading.Event()

    def on_b(msg: dict[str, Any]) -> None:
        got_b.append(msg)
        if sum(len(m.get("r", [])) for m in got_b if m["k"] == "events") >= 1000:
            done.set()

    try:
        a.start()
        b.start()
        b.publish("reload", path="/x", bundle="early")  # arrives before a opens its gate: buffered, not lost
        time.sleep(0.3)
        a.open_gate(got_a.append)
        b.open_gate(on_b)
        records = [{"event_id": f"e{i:0>120}", "user_id": f"u{i}", "item_id": "用品" * 40, "event_type": "view",
                    "ts": 1_700_000_000 + i} for i in range(1000)]  # fmt: skip
        assert len(json.dumps(records)) > 20 * PAYLOAD_LIMIT  # must travel in many NOTIFY chunks
        assert a.publish_events(records)
        assert done.wait(10), f"only {sum(len(m.get('r', [])) for m in got_b)} of 1000 events arrived"
    finally:
        a.close()
        b.close()
    assert [m["k"] for m in got_a] == ["reload"]  # b's early message; a never receives its own
    assert records_from([r for m in got_b for r in m.get("r", [])]) == records


def _append_batches(path: str, worker: int, n: int) -> None:
    log = EventLog(Path(path))
    for b in range(n):
        log.append([{"event_id": f"w{worker}-b{b}-{j}", "user_id": f"u{worker}", "item_id": "i1"} for j in range(5)])
    log.close()


def test_processes_share_one_event_log_across_compaction_and_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_id": "torn", "user_id"')  # a worker killed mid-write
    ctx = multiprocessing.get_context("fork")  # fast: the children only need EventLog
    procs = [ctx.Process(target=_append_batches, args=(str(path), w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    compactor = EventLog(path)
    for _ in range(5):  # forgetting compacts (replaces) the file while the others append
        compactor.drop_user("nobody")
        time.sleep(0.05)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    compactor.close()
    ids = [r["event_id"] for r in EventLog(path).replay_all()]
    assert len(ids) == len(set(ids)) == 3 * 40 * 5  # none lost to the old inode, none glued to the torn line


# --- real servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def light_bundle(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame]) -> Path:
    """The shop without a search index: each worker loads it in well under a second."""
    return build_shop_bundle(tmp_path_factory.mktemp("bundles"), *shop, search=False)


def _serve(tmp_path: Path, store: str, bundle: Path, **extra: Any) -> tuple[Any, str, list[int]]:
    cfg = write_config(
        tmp_path / "serve.toml", port=free_port(), bundle=str(bundle), bundles_dir=str(bundle.parent), store=store,
        event_log=str(tmp_path / "events.jsonl"), api_key=API_KEY, demo=True, workers=2, **extra,
    )  # fmt: skip
    proc, url = start_server(cfg, timeout=120)
    try:
        return proc, url, wait_workers(url, 2)
    except BaseException:
        _stop(proc)
        raise


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, shop: tuple[pd.DataFrame, pd.DataFrame],
    light_bundle: Path,
) -> Iterator[tuple[str, list[int]]]:
    """`soutui serve --workers 2 --store postgresql://...`: (base URL, the two worker pids)."""
    db = shop_database(pg_server, shop)
    proc, url, pids = _serve(tmp_path_factory.mktemp("two-workers"), db, light_bundle)
    try:
        yield url, pids
    finally:
        _stop(proc)


def _stop(proc: Any) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def _post(url: str, batch: list[dict[str, Any]]) -> int:
    """Post until acknowledged (a batch is idempotent by event_id); returns the worker that acked."""
    for _ in range(100):
        try:
            r = httpx.post(url + "/v1/events", json={"events": batch}, headers=H, timeout=20)
            if r.status_code == 200:
                return int(r.headers[WORKER])
        except httpx.HTTPError:
            pass  # the worker holding this connection was just killed
        time.sleep(0.05)
    raise AssertionError("batch never acknowledged")


def test_an_event_acked_by_one_worker_changes_the_other_workers_answer_within_1_s(
    two_workers: tuple[str, list[int]],
) -> None:
    url, pids = two_workers
    lags: list[float] = []
    stale = 0  # answers of the other worker without the event (allowed only within 1 s of the ack)
    for target in pids * 2:  # both directions, twice
        for k in range(200):  # posted until it lands on `target` (a fresh user each try)
            user = f"rt-{target}-{len(lags)}-{k}"
            ev = {"event_id": f"{user}-e", "user_id": user, "item_id": "i6", "event_type": "view"}
            if _post(url, [ev]) == target:
                break
        else:
            pytest.fail(f"worker {target} never acked an event")
        acked = time.monotonic()
        while True:  # until the other worker answers; an answer asked 1 s after the ack must show the event
            sent = time.monotonic()
            r = httpx.get(url + f"/v1/recommend/{user}", timeout=5)
            assert r.status_code == 200, r.text
            if int(r.headers[WORKER]) == target:
                assert r.json()["history_length"] == 1
                continue
            if r.json()["history_length"] == 1:
                lags.append(sent - acked)
                break
            stale += 1
            assert sent - acked < 1.0, "the other worker did not see the event within 1 s"
            assert sent - acked < 30.0, "the other worker never answered"
    print(f"cross-worker: first answer of the other worker showing the event, s after the ack: {lags}; stale answers: {stale}")
    assert len(lags) == 4, lags


def _answers_from(url: str, path: str, pid: int, tries: int = 400) -> tuple[dict[str, Any], float]:
    """GET `path` on new connections until worker `pid` answers: (its JSON, when that request was sent)."""
    for _ in range(tries):
        sent = time.monotonic()
        r = httpx.get(url + path, timeout=5)
        if int(r.headers[WORKER]) == pid:
            body: dict[str, Any] = r.json()
            return body, sent
    raise AssertionError(f"worker {pid} never answered {path}")


def test_one_batch_posted_to_both_workers_at_once_enters_every_history_once(two_workers: tuple[str, list[int]]) -> None:
    """Retries racing on two workers: each worker claims an event id once (its log's `seen`, fed by the
    bus), so histories never double it, whichever worker accepted it first."""
    url, pids = two_workers
    batch = [{"event_id": f"race-{j}", "user_id": "racer", "item_id": f"i{4 * j + 1}", "event_type": "view"} for j in range(5)]
    acks: list[tuple[int, int]] = []

    def post() -> None:
        r = httpx.post(url + "/v1/events", json={"events": batch}, headers=H, timeout=30)
        assert r.status_code == 200, r.text
        acks.append((int(r.headers[WORKER]), r.json()["accepted"]))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(acks) == 8 and sum(a for _, a in acks) >= 5
    t0 = time.monotonic()
    for pid in pids:
        while (ans := _answers_from(url, "/v1/recommend/racer", pid))[0]["history_length"] != 5:
            assert ans[0]["history_length"] < 5, ans[0]  # never doubled
            assert ans[1] - t0 < 1.0, "a worker did not see the batch within 1 s"


def test_forgetting_a_user_on_one_worker_forgets_them_on_every_worker(two_workers: tuple[str, list[int]]) -> None:
    url, pids = two_workers
    batch = [{"event_id": f"fg-{j}", "user_id": "forget-me", "item_id": f"i{4 * j}", "event_type": "view"} for j in range(3)]
    by = _post(url, batch)
    other, t0 = next(p for p in pids if p != by), time.monotonic()
    while (ans := _answers_from(url, "/v1/recommend/forget-me", other))[0]["history_length"] != 3:
        assert ans[1] - t0 < 1.0, "the other worker did not see the events within 1 s"
    r = httpx.delete(url + "/v1/users/forget-me", headers=H, timeout=30)
    assert r.status_code == 200, r.text
    by, t0 = int(r.headers[WORKER]), time.monotonic()
    assert _answers_from(url, "/v1/recommend/forget-me", by)[0]["history_length"] == 0
    other = next(p for p in pids if p != by)
    while (ans := _answers_from(url, "/v1/recommend/forget-me", other))[0]["history_length"]:
        assert ans[1] - t0 < 1.0, "the other worker still serves the forgotten user's history after 1 s"


def test_kill_9_of_one_worker_of_two_loses_no_acknowledged_event(
    tmp_path: Path, pg_server: PgServer, shop: tuple[pd.DataFrame, pd.DataFrame], light_bundle: Path
) -> None:
    db = shop_database(pg_server, shop)
    proc, url, _ = _serve(tmp_path, db, light_bundle, flush_interval_s=3600.0)  # acked = in the log only
    acked: dict[str, int] = {}  # event id -> worker that acked it
    victim = -1
    try:
        for b in range(8):
            batch = [{"event_id": f"k9-{b}-{j}", "user_id": "survivor", "item_id": f"i{(4 * j + 2) % 40}",
                      "event_type": "view"} for j in range(5)]  # fmt: skip
            by = _post(url, batch)
            acked.update({e["event_id"]: by for e in batch})
            if b == 3:  # the worker that acked the last batch dies with no shutdown hook
                victim = by
                os.kill(victim, signal.SIGKILL)
        assert victim in acked.values()
        live = wait_workers(url, 2)  # the survivor and uvicorn's replacement for the victim
        assert victim not in live
        for pid in live:  # every worker, the replacement included, holds all 40 acked events
            assert _answers_from(url, "/v1/recommend/survivor", pid)[0]["history_length"] == 40
    finally:
        _stop(proc)
    store = open_store(db)
    try:
        ids = store.read("shop", "events")["event_id"].astype(str)
    finally:
        store.close()
    counts = ids[ids.str.startswith("k9-")].value_counts()
    assert set(counts.index) == set(acked) and (counts == 1).all()


def test_a_bundle_reload_reaches_every_worker(
    tmp_path: Path, two_workers: tuple[str, list[int]], shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Runs last on the shared server (it swaps the bundle and kills a worker): asked of one worker,
    done by both, and by the worker that replaces a dead one."""
    url, pids = two_workers
    newer = build_shop_bundle(tmp_path / "bundles", *shop, version="workers-v2", search=False)
    r = httpx.post(url + "/v1/admin/reload", json={"bundle": str(newer)}, headers=H, timeout=60)
    assert r.status_code == 200 and r.json()["bundle"] == "shop-workers-v2", r.text
    t0 = time.monotonic()
    versions: dict[int, str] = {}
    while set(versions) != set(pids) or set(versions.values()) != {"shop-workers-v2"}:
        assert time.monotonic() - t0 < 30, versions
        h = httpx.get(url + "/healthz", timeout=5)
        versions[int(h.headers[WORKER])] = h.json()["bundle"]
    os.kill(pids[0], signal.SIGKILL)  # uvicorn's replacement starts on the configured (old) bundle ...
    fresh = next(p for p in wait_workers(url, 2) if p not in pids)
    t0 = time.monotonic()
    while _answers_from(url, "/healthz", fresh)[0]["bundle"] != "shop-workers-v2":  # ... and moves to its peer's
        assert time.monotonic() - t0 < 30, "the replacement worker did not take its peer's bundle"


@pytest.mark.slow  # ~70 s on the shared machine: three worker replacements
def test_random_kill_9_of_workers_under_concurrent_posts_stores_every_acked_event_once(
    tmp_path: Path, pg_server: PgServer, shop: tuple[pd.DataFrame, pd.DataFrame], light_bundle: Path
) -> None:
    """Two clients post random batches without pause while a random worker is killed three times,
    so kills land inside appends to the shared log (torn lines) and inside store syncs."""
    rng = random.Random(0)
    db = shop_database(pg_server, shop)
    proc, url, _ = _serve(tmp_path, db, light_bundle, flush_interval_s=0.05)
    acked: set[str] = set()
    stop = threading.Event()

    def client(c: int) -> None:
        crng, b = random.Random(c), 0
        while not stop.is_set():
            batch = [{"event_id": f"fz{c}-{b}-{j}", "user_id": f"u{crng.randint(0, 59)}",
                      "item_id": f"i{crng.randint(0, 39)}", "event_type": "view"} for j in range(crng.randint(1, 20))]  # fmt: skip
            b += 1
            try:
                if httpx.post(url + "/v1/events", json={"events": batch}, headers=H, timeout=20).status_code == 200:
                    acked.update(e["event_id"] for e in batch)
            except httpx.HTTPError:
                pass  # not acknowledged: may or may not be stored, never twice
    clients = [threading.Thread(target=client, args=(c,)) for c in range(2)]
    try:
        for t in clients:
            t.start()
        for _ in range(3):
            time.sleep(rng.uniform(0.2, 1.0))
            os.kill(rng.choice(wait_workers(url, 2)), signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 1.0))
        stop.set()
        for t in clients:
            t.join(timeout=60)
        wait_workers(url, 2)  # the last replacement has replayed the log
    finally:
        stop.set()
        _stop(proc)
    store = open_store(db)
    try:
        ids = store.read("shop", "events")["event_id"].astype(str)
    finally:
        store.close()
    counts = ids[ids.str.startswith("fz")].value_counts()
    assert len(acked) > 50 and acked <= set(counts.index), f"{len(acked - set(counts.index))} acked events lost"
    assert (counts == 1).all(), counts[counts > 1]
