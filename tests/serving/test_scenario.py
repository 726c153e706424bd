"""Issue 10's black-box scenario, end to end through the CLI import and a real server process.

1. A generic import with pseudonymisation and one blank event_id.
2. Two live item events and one search event holding an e-mail and a phone number, sent under
   the shop's raw user id.
3. A restart: the raw id's history grew by exactly 2, and neither the e-mail nor the phone is
   in any file under SOUTUI_HOME.
4. DELETE /v1/users/{id}: the history is 0, still 0 after a restart, and the raw id is in no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_shop import API_KEY, build_shop_bundle, free_port, make_shop, start_server, write_config

from soutui.cli import main
from soutui.data.privacy import pseudonym
from soutui.data.store import open_store

KEY = "scenario-pseudonym-key-0123456789"
H = {"X-API-Key": API_KEY}
RAW = "cust-00005-dora"  # the shop's own id for synthetic user u5
EMAIL, PHONE = "dora.scenario@example.net", "13987654321"


def files_holding(home: Path, *needles: str) -> list[str]:
    """Every file under `home` (store, event log, bundles, indexes) that holds one of `needles`."""
    found = []
    for p in sorted(home.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p.relative_to(home)}: {n}" for n in needles if n.encode() in data]
    return found


def history(url: str) -> int:
    r = httpx.get(f"{url}/v1/recommend/{RAW}", headers=H, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["history_length"])


def stop(proc: Any) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def test_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("SOUTUI_HOME", str(home))
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    items, events = make_shop()
    events["user_id"] = events["user_id"].map(lambda u: f"cust-{int(u[1:]):05d}-{'dora' if u == 'u5' else 'x'}")
    events.loc[3, "event_id"] = ""  # one blank event_id cell
    items.to_csv(tmp_path / "items.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)

    # 1. generic import (pseudonymised by default), then a bundle over the imported data
    assert main(["data", "import", "generic", "--name", "shop", "--events", str(tmp_path / "events.csv"),
                 "--items", str(tmp_path / "items.csv")]) == 0  # fmt: skip
    store = open_store()
    try:
        stored = store.read("shop", "events")
    finally:
        store.close()
    alias = pseudonym(RAW, KEY.encode())
    assert len(stored) == len(events) and stored["event_id"].notna().all() and RAW not in set(stored["user_id"])
    build_shop_bundle(home / "bundles", items, stored[["event_id", "user_id", "item_id", "event_type", "ts"]])
    cfg = write_config(tmp_path / "serve.toml", port=free_port(), api_key=API_KEY, flush_interval_s=0.2)
    env = {"SOUTUI_HOME": str(home), "SOUTUI_PSEUDONYM_KEY": KEY}

    # 2. live events under the raw id
    proc, url = start_server(cfg, env)
    try:
        before = history(url)
        assert before == 8  # the imported history, found by the raw id
        live = [
            {"event_id": "sc-1", "user_id": RAW, "item_id": "i9", "event_type": "view"},
            {"event_id": "sc-2", "user_id": RAW, "item_id": "i13", "event_type": "cart"},
            {"event_id": "sc-3", "user_id": RAW, "event_type": "search",
             "query": f"gift wrap, mail me at {EMAIL} or call {PHONE}"},
        ]  # fmt: skip
        r = httpx.post(url + "/v1/events", json={"events": live}, headers=H, timeout=10)
        assert r.json() == {"accepted": 3, "duplicates": 0}
    finally:
        stop(proc)

    # 3. restart: exactly 2 more, and the PII is in no file
    proc, url = start_server(cfg, env)
    try:
        assert history(url) == before + 2
    finally:
        stop(proc)
    assert files_holding(home, EMAIL, PHONE, RAW) == []
    assert files_holding(home, alias)  # control: the scan does see the pseudonym (event log, store)

    # 4. forget, restart, scan
    proc, url = start_server(cfg, env)
    try:
        r = httpx.delete(f"{url}/v1/users/{RAW}", headers=H, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["events"] == before + 3 and r.json()["pending_rebuild"]
        assert history(url) == 0
    finally:
        stop(proc)
    proc, url = start_server(cfg, env)
    try:
        assert history(url) == 0
    finally:
        stop(proc)
    assert files_holding(home, RAW, alias, EMAIL, PHONE) == []
