"""Privacy and input checks on the live paths (issue 10, points 3, 4, 8, 9, 10, 14).

Live events get the import's treatment before the log, the store and the histories; reads
take the shop's raw user id; reads need a key outside demo mode and no answer shows a path;
bad input is a 422, never a 500; one corrupt newer bundle does not keep the shop offline.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_shop import API_KEY

from soutui.data.privacy import PrivacyError, pseudonym
from soutui.data.store import open_store
from soutui.serving.app import create_app
from soutui.serving.events import Histories
from soutui.serving.settings import ServeSettings

H = {"X-API-Key": API_KEY}
KEY = "k" * 32
EMAIL, PHONE, CN_ID = "alice@example.com", "13812345678", "11010519491231002X"


def _events_in_store(url: str) -> pd.DataFrame:
    s = open_store(url, read_only=True)
    try:
        return s.read("shop", "events")
    finally:
        s.close()


def test_live_events_are_pseudonymised_and_masked(
    settings: ServeSettings, shop: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(settings.store)
    try:  # the dataset as `soutui data import generic` leaves it: pseudonymised
        store.write_dataset("shop", {"items": shop[0], "events": shop[1]}, meta={"pseudonymised": "true"})
    finally:
        store.close()
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    query = f"lipstick for {EMAIL} call {PHONE} id {CN_ID}"
    batch = {"events": [
        {"event_id": "p-1", "user_id": EMAIL, "item_id": "i3", "event_type": "view", "session_id": "sess-alice"},
        {"event_id": "p-2", "user_id": EMAIL, "item_id": "i7", "event_type": "cart"},
        {"event_id": "p-3", "user_id": EMAIL, "event_type": "search", "query": query},
    ]}  # fmt: skip
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/events", json=batch, headers=H).json() == {"accepted": 3, "duplicates": 0}
        # reads take the shop's raw id and map it with the same key
        assert c.get(f"/v1/recommend/{EMAIL}").json()["history_length"] == 2
        assert c.get("/v1/search", params={"q": "product", "user_id": EMAIL}).status_code == 200
        c.app.state.service.sync.flush()  # type: ignore[attr-defined]
    logged = Path(settings.event_log).read_text()
    for raw in (EMAIL, PHONE, CN_ID, "sess-alice"):
        assert raw not in logged
    alias = pseudonym(EMAIL, KEY.encode())
    assert alias in logged and pseudonym("sess-alice", KEY.encode()) in logged
    ev = _events_in_store(settings.store).set_index("event_id")
    assert ev.loc["p-1", "user_id"] == alias
    assert ev.loc["p-3", "query"] == "lipstick for [EMAIL] call [PHONE] id [ID]"


def test_pseudonymised_dataset_needs_the_key_to_serve(
    settings: ServeSettings, shop: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw ids must never be mixed with pseudonyms: no key, no server (a one-line error)."""
    monkeypatch.delenv("SOUTUI_PSEUDONYM_KEY", raising=False)
    store = open_store(settings.store)
    try:
        store.write_dataset("shop", {"items": shop[0], "events": shop[1]}, meta={"pseudonymised": "true"})
    finally:
        store.close()
    with pytest.raises(PrivacyError, match="SOUTUI_PSEUDONYM_KEY"):
        create_app(settings)


def test_serve_demo_flag() -> None:
    from soutui.cli import build_parser
    from soutui.cli.serve_cmd import settings_from_args

    assert settings_from_args(build_parser().parse_args(["serve", "--demo"])).demo
    assert not settings_from_args(build_parser().parse_args(["serve"])).demo


def test_identity_without_pseudonymisation(settings: ServeSettings) -> None:
    """A dataset imported without pseudonyms keeps ids as given, live too (the shop's ids are the keys)."""
    with TestClient(create_app(settings)) as c:
        ev = [{"event_id": "id-1", "user_id": "plain-user", "item_id": "i3", "event_type": "view"}]
        c.post("/v1/events", json={"events": ev}, headers=H)
        assert c.get("/v1/recommend/plain-user").json()["history_length"] == 1
    assert '"plain-user"' in Path(settings.event_log).read_text()


def test_reads_need_a_key_outside_demo_mode(settings: ServeSettings, tmp_path: Path) -> None:
    reads = ["/v1/recommend/u1", "/v1/demo-users", "/v1/trending", "/v1/search?q=product", "/v1/items/i1",
             "/v1/similar/i1", "/v1/admin/bundle", "/v1/admin/stats", "/v1/admin/evaluation"]
    locked = dataclasses.replace(settings, demo=False, read_key="read-key-456")
    with TestClient(create_app(locked)) as c:
        for path in reads:
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": "wrong"}).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": "read-key-456"}).status_code == 200, path
            assert c.get(path, headers=H).status_code == 200, path  # the write key reads too
        ev = {"events": [{"event_id": "r", "user_id": "u", "item_id": "i1", "event_type": "view"}]}
        assert c.post("/v1/events", json=ev, headers={"X-API-Key": "read-key-456"}).status_code == 401
        assert c.get("/healthz").status_code == 200  # liveness stays open, and shows no data
        info = c.get("/v1/admin/bundle", headers=H)
        assert str(tmp_path) not in info.text and "/tmp" not in info.text and "path" not in info.json()
    no_keys = dataclasses.replace(settings, demo=False, api_key="", read_key="", insecure_dev=True)
    with TestClient(create_app(no_keys)) as c:
        r = c.get("/v1/recommend/u1")
        assert r.status_code == 403 and "--demo" in r.json()["detail"]


def test_lone_surrogate_is_a_422(client: TestClient) -> None:
    body = '{"events": [{"event_id": "s-1", "user_id": "u\\ud800", "item_id": "i1", "event_type": "view"}]}'
    r = client.post("/v1/events", content=body.encode(), headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text  # pydantic refuses it; rendering the 422 used to fail (a 500)
    assert r.json()["detail"][0]["loc"] == ["body", "events", 0, "user_id"]
    q = '{"events": [{"event_id": "s-2", "user_id": "u", "event_type": "search", "query": "\\udfff"}]}'
    assert client.post("/v1/events", content=q.encode(), headers={**H, "Content-Type": "application/json"}).status_code == 422


def test_future_events_are_refused(client: TestClient) -> None:
    far = {"events": [{"event_id": "f-1", "user_id": "u", "item_id": "i1", "event_type": "view", "ts": 4_102_000_000}]}
    r = client.post("/v1/events", json=far, headers=H)
    assert r.status_code == 422 and "future" in r.text
    soon = int(time.time()) + 3600  # clock skew under a day is accepted, as at import
    ok = {"events": [{"event_id": "f-2", "user_id": "u", "item_id": "i1", "event_type": "view", "ts": soon}]}
    assert client.post("/v1/events", json=ok, headers=H).json()["accepted"] == 1


def test_a_far_future_event_already_logged_does_not_take_over_trending() -> None:
    """An old log (or store) may hold one event dated 2100: it must not move the trending window."""
    h = Histories(max_len=50, trending_days=7)
    now = int(time.time())
    h.add_many([(f"u{j}", "i1", "view", now - 60) for j in range(5)] + [("x", "i2", "view", 4_102_000_000)])
    vec = h.trending_vector({"i1": 0, "i2": 1}, 2)
    assert vec[0] > vec[1]


def test_newest_corrupt_bundle_is_skipped(settings: ServeSettings, shop_bundle: Path, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    old, new = bundles / "shop-old", bundles / "shop-new"
    shutil.copytree(shop_bundle, old)
    shutil.copytree(shop_bundle, new)
    manifest = json.loads((new / "manifest.json").read_text())
    manifest["created"], manifest["version"] = "9999-01-01T00:00:00", "newer"
    (new / "manifest.json").write_text(json.dumps(manifest))
    with open(new / "items.parquet", "r+b") as fh:  # one flipped byte: the checksum no longer matches
        fh.seek(20)
        byte = fh.read(1)
        fh.seek(20)
        fh.write(bytes([byte[0] ^ 0xFF]))
    s = dataclasses.replace(settings, bundle="", bundles_dir=str(bundles))
    with TestClient(create_app(s)) as c:
        info = c.get("/v1/admin/bundle").json()
        assert info["version"] != "shop-newer"
        assert len(info["skipped"]) == 1 and "shop-new" in info["skipped"][0] and "checksum" in info["skipped"][0]
        assert str(tmp_path) not in json.dumps(info)
        assert c.get("/v1/recommend/u1").json()["history_length"] == 8


def test_reimport_keeps_synced_live_events(settings: ServeSettings, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        live = [{"event_id": f"live-{j}", "user_id": "shopper", "item_id": f"i{j}", "event_type": "view"} for j in range(3)]
        c.post("/v1/events", json={"events": live}, headers=H)
        svc.sync.flush()
        assert {"live-0", "live-1", "live-2"} <= set(_events_in_store(settings.store)["event_id"])
        store = open_store(settings.store)
        try:  # `soutui data import` of the same shop while the server runs
            store.write_dataset("shop", {"items": shop[0], "events": shop[1]}, meta={"imported_at": str(time.time())})
        finally:
            store.close()
        more = [{"event_id": "live-3", "user_id": "shopper", "item_id": "i3", "event_type": "view"}]
        c.post("/v1/events", json={"events": more}, headers=H)
        svc.sync.flush()
        ids = _events_in_store(settings.store)["event_id"].tolist()
        assert {"live-0", "live-1", "live-2", "live-3"} <= set(ids) and ids.count("live-0") == 1
        assert c.get("/v1/recommend/shopper").json()["history_length"] == 4


@pytest.mark.browser
def test_pages_send_the_read_key(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path) -> None:
    """Outside demo mode the storefront and dashboard send the key given once as `?key=`."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium fonts-wqy-microhei)")
    from playwright.sync_api import sync_playwright
    from serving_shop import free_port, make_home, start_server, write_config

    cfg = write_config(tmp_path / "serve.toml", port=free_port(), bundle=str(shop_bundle), store=make_home(tmp_path, shop),
                       event_log=str(tmp_path / "e.jsonl"), api_key=API_KEY, read_key="page-read-key")  # fmt: skip
    proc, url = start_server(cfg)
    try:
        assert httpx.get(url + "/v1/trending").status_code == 401
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(url + "/?key=page-read-key")
            page.wait_for_selector("#trending .card")
            page.goto(url + "/admin")  # the key was kept in localStorage
            page.wait_for_selector("#stats table")
            assert page.inner_text("#version").startswith("shop-")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
