"""Durability and isolation of the real server process: kill -9 after acks, torch-free serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pandas as pd
from serving_shop import API_KEY, free_port, make_home, start_server, write_config

from soutui.data.store import open_store

H = {"X-API-Key": API_KEY}


def test_acked_events_survive_kill_9(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path) -> None:
    store = make_home(tmp_path, shop)
    cfg = write_config(
        tmp_path / "serve.toml", port=free_port(), bundle=str(shop_bundle), store=store,
        event_log=str(tmp_path / "events.jsonl"), flush_interval_s=3600.0, api_key=API_KEY, demo=True,
    )
    proc, url = start_server(cfg)
    acked = []
    try:
        for b in range(5):
            batch = [{"event_id": f"k9-{b}-{j}", "user_id": "survivor", "item_id": f"i{(4 * j + 2) % 40}",
                      "event_type": "view"} for j in range(4)]
            r = httpx.post(url + "/v1/events", json={"events": batch}, headers=H, timeout=10)
            assert r.status_code == 200 and r.json()["accepted"] == 4
            acked += [e["event_id"] for e in batch]
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs: only what was fsync'd survives
        proc.wait()
    proc, url = start_server(cfg)
    try:
        body = httpx.get(url + "/v1/recommend/survivor", timeout=10).json()
        assert body["history_length"] == 20 and body["model"] == "itemknn"
        retry = [{"event_id": acked[0], "user_id": "survivor", "item_id": "i2", "event_type": "view"}]
        assert httpx.post(url + "/v1/events", json={"events": retry}, headers=H).json()["duplicates"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    s = open_store(store)  # replayed into the store at restart
    try:
        ids = set(s.read("shop", "events")["event_id"])
    finally:
        s.close()
    assert set(acked) <= ids


def test_write_endpoints_refused_without_key(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path) -> None:
    from fastapi.testclient import TestClient

    from soutui.serving.app import create_app
    from soutui.serving.settings import ServeSettings

    env_key = os.environ.pop("SOUTUI_API_KEY", None)
    try:
        s = ServeSettings(bundle=str(shop_bundle), store=make_home(tmp_path, shop), event_log=str(tmp_path / "e.jsonl"),
                          demo=True)
        with TestClient(create_app(s)) as c:
            batch = {"events": [{"event_id": "x", "user_id": "u", "item_id": "i1", "event_type": "view"}]}
            r = c.post("/v1/events", json=batch)
            assert r.status_code == 403 and "SOUTUI_API_KEY" in r.json()["detail"]
            assert c.get("/v1/recommend/u1").status_code == 200  # reads stay open (demo mode)
        dev = ServeSettings(bundle=str(shop_bundle), store=s.store, event_log=s.event_log, insecure_dev=True, demo=True)
        with TestClient(create_app(dev)) as c:
            assert c.post("/v1/events", json=batch).status_code == 200
    finally:
        if env_key is not None:
            os.environ["SOUTUI_API_KEY"] = env_key


NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, Block())
    from fastapi.testclient import TestClient
    from soutui.serving.app import create_app
    from soutui.serving.settings import ServeSettings
    s = ServeSettings(bundle=sys.argv[1], store=sys.argv[2], event_log=sys.argv[3], api_key="k", demo=True)
    with TestClient(create_app(s)) as c:
        r = c.get("/v1/recommend/u1"); assert r.status_code == 200 and r.json()["items"], r.text
        item = r.json()["items"][0]["item_id"]
        assert c.get(f"/v1/similar/{item}").status_code == 200
        if c.get("/v1/admin/bundle").json()["manifest"]["search"]:
            r = c.get("/v1/search", params={"q": "product"}); assert r.status_code == 200, r.text
            print("search ok")
        r = c.post("/v1/events", json={"events": [{"event_id": "nt", "user_id": "u1", "item_id": item,
                   "event_type": "view"}]}, headers={"X-API-Key": "k"}); assert r.status_code == 200
    assert "torch" not in sys.modules
    print("served without torch")
    """
)


def test_server_answers_without_torch(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path) -> None:
    bundle = os.environ.get("SOUTUI_TEST_BUNDLE", str(shop_bundle))  # point at a real bundle to check it too
    out = subprocess.run(
        [sys.executable, "-c", NO_TORCH, bundle, make_home(tmp_path, shop), str(tmp_path / "e.jsonl")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "served without torch" in out.stdout
