"""Fault test of the real server: random batches, random kill -9 points while the store sync and
bundle reloads run, then a restart: every acknowledged event is in the store exactly once.

(The import-side kill points are in tests/data/test_store_ids.py.)
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_shop import API_KEY, free_port, make_home, start_server, write_config

from soutui.data.store import open_store

H = {"X-API-Key": API_KEY}


def _reload_until(url: str, stop: threading.Event, rng: random.Random) -> None:
    """Keep the server reloading its bundle, so some kills land inside a reload."""
    while not stop.is_set():
        try:
            httpx.post(url + "/v1/admin/reload", headers=H, timeout=10)
        except httpx.HTTPError:
            return  # the server was killed
        stop.wait(rng.uniform(0.0, 0.05))


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_random_kill_9_loses_no_acknowledged_event(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path, seed: int
) -> None:
    rng = random.Random(seed)
    store = make_home(tmp_path, shop)
    cfg = write_config(
        tmp_path / "serve.toml", port=free_port(), bundle=str(shop_bundle), store=store,
        event_log=str(tmp_path / "events.jsonl"), flush_interval_s=0.05, api_key=API_KEY, demo=True,
    )  # fmt: skip
    acked: dict[str, dict[str, str]] = {}
    for life in range(3):  # three server lives, each killed at a random point
        proc, url = start_server(cfg)
        stop = threading.Event()
        reloader = threading.Thread(target=_reload_until, args=(url, stop, random.Random(seed * 10 + life)))
        reloader.start()
        try:
            for b in range(rng.randint(2, 10)):
                batch = [
                    {"event_id": f"s{seed}-l{life}-b{b}-{j}", "user_id": f"u{rng.randint(0, 59)}",
                     "item_id": f"i{rng.randint(0, 39)}", "event_type": rng.choice(["view", "cart"])}
                    for j in range(rng.randint(1, 25))
                ]  # fmt: skip
                r = httpx.post(url + "/v1/events", json={"events": batch}, headers=H, timeout=20)
                assert r.status_code == 200, r.text
                acked.update({e["event_id"]: e for e in batch})
            time.sleep(rng.uniform(0.0, 0.2))  # lands during a store sync, a reload, or idle
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook: only what was made durable survives
            proc.wait()
            stop.set()
            reloader.join(timeout=20)
    proc, url = start_server(cfg)  # the last restart replays the log into the store
    try:
        u = next(iter(acked.values()))["user_id"]
        assert httpx.get(url + f"/v1/recommend/{u}", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    s = open_store(store)
    try:
        ids = s.read("shop", "events")["event_id"].astype(str)
    finally:
        s.close()
    counts = ids.value_counts()
    missing = [e for e in acked if e not in counts.index]
    twice = [e for e in acked if counts.get(e, 0) > 1]
    assert not missing and not twice, (len(acked), missing[:5], twice[:5])
