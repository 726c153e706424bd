"""DELETE /v1/users/{user_id}: the user leaves the store, the event log, live histories,
trending, caches and search personalisation at once, and a restart does not bring them back.

Issue 10, point 7. Every file under SOUTUI_HOME is scanned for the raw id and its pseudonym.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_shop import API_KEY, build_shop_bundle
from test_scenario import files_holding

from soutui.data.privacy import pseudonym
from soutui.data.store import open_store
from soutui.serving.app import create_app
from soutui.serving.bundle_build import build_from_dataset
from soutui.serving.settings import ServeSettings

KEY = "forget-test-pseudonym-key-0123456"
H = {"X-API-Key": API_KEY}
RAW = "erin.forgettable@example.org"


@pytest.fixture
def home(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SOUTUI_HOME with a pseudonymised shop (user u2 is RAW), a quarantined row of RAW, a bundle."""
    home = tmp_path / "home"
    monkeypatch.setenv("SOUTUI_HOME", str(home))
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY)
    items, events = shop
    ev = events.assign(user_id=events["user_id"].map(lambda u: pseudonym(RAW if u == "u2" else u, KEY.encode())))
    quarantine = pd.DataFrame({"table": ["events"], "row": ["9"], "reason": ["unknown_item"],
                               "data": [json.dumps({"user_id": RAW, "item_id": "nope"})]})  # fmt: skip
    store = open_store()
    try:
        users = pd.DataFrame({"user_id": ev["user_id"].unique()})
        store.write_dataset("shop", {"items": items, "events": ev, "users": users}, quarantine=quarantine,
                            meta={"pseudonymised": "true"})  # fmt: skip
    finally:
        store.close()
    build_shop_bundle(home / "bundles", items, ev, search=True)
    return home


def test_forget_removes_the_user_everywhere(home: Path) -> None:
    alias = pseudonym(RAW, KEY.encode())
    settings = ServeSettings(api_key=API_KEY, flush_interval_s=0.0)
    with TestClient(create_app(settings), headers=H) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        live = [{"event_id": f"fg-{j}", "user_id": RAW, "item_id": f"i{j}", "event_type": "purchase"} for j in (2, 6)]
        c.post("/v1/events", json={"events": live[:1]}, headers=H)
        svc.sync.flush()  # one live event in the store ...
        c.post("/v1/events", json={"events": live[1:]}, headers=H)  # ... one still waiting for the sync
        assert c.get(f"/v1/recommend/{RAW}").json()["history_length"] == 10
        anonymous = c.get("/v1/search", params={"q": "product", "k": 20}).json()["items"]
        personal = c.get("/v1/search", params={"q": "product", "k": 20, "user_id": RAW}).json()["items"]
        assert personal != anonymous  # control: the history does personalise search
        trending = svc.bundle.trending.copy()

        assert c.delete(f"/v1/users/{RAW}", headers={"X-API-Key": "read-only"}).status_code == 401
        r = c.delete(f"/v1/users/{RAW}", headers=H)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == {"events": 9, "users": 1, "quarantine": 1, "event_log": 2, "live_history": 10}
        assert c.get(f"/v1/recommend/{RAW}").json()["history_length"] == 0
        assert c.get("/v1/search", params={"q": "product", "k": 20, "user_id": RAW}).json()["items"] == anonymous
        assert (svc.bundle.trending < trending).sum() > 0 and svc.search_cache.stats()["entries"] == 0
        assert alias not in svc.histories.recent and alias not in svc.histories.purchased
        svc.sync.flush()  # the pending event must not come back through the sync
    with TestClient(create_app(settings), headers=H) as c:  # a restart replays the log and reloads the store
        assert c.get(f"/v1/recommend/{RAW}").json()["history_length"] == 0
    assert files_holding(home, RAW, alias) == []
    store = open_store(read_only=True)
    try:
        assert (store.read("shop", "events")["user_id"] == alias).sum() == 0
        assert store.read("shop", "quarantine").empty
        assert len(store.pending_forget("shop")) == 1  # the next bundle must be built without the user
    finally:
        store.close()
    time.sleep(1.1)  # pending rows are cleared for requests strictly before the build read the data (unix s)
    build_from_dataset("shop", home / "bundles", with_search=False, progress=lambda _: None)
    store = open_store(read_only=True)
    try:
        assert store.pending_forget("shop") == []  # ... and now it is
    finally:
        store.close()


def test_forget_by_raw_id_without_pseudonyms(settings: ServeSettings) -> None:
    """No key, no pseudonyms: the raw id is the stored id; u1's imported history goes too."""
    with TestClient(create_app(settings)) as c:
        c.post("/v1/events", json={"events": [{"event_id": "raw-1", "user_id": "u1", "item_id": "i5",
                                               "event_type": "view"}]}, headers=H)  # fmt: skip
        assert c.get("/v1/recommend/u1").json()["history_length"] == 9
        r = c.delete("/v1/users/u1", headers=H)
        assert r.status_code == 200 and r.json()["deleted"]["events"] == 8 and r.json()["deleted"]["event_log"] == 1
        assert c.get("/v1/recommend/u1").json()["history_length"] == 0
        assert c.delete("/v1/users/u1").status_code == 401  # the write key is required
    assert '"u1"' not in Path(settings.event_log).read_text()


def test_cli_forget_reaches_the_server(settings: ServeSettings) -> None:
    """`soutui data forget` beside a running server, and while it is down: the server forgets the
    user on its next store sync, and a restart does not replay them from its event log."""
    from soutui.cli import main

    def events(user: str) -> dict[str, list[dict[str, str]]]:
        return {"events": [{"event_id": f"{user}-{j}", "user_id": user, "item_id": f"i{j}", "event_type": "view"}
                           for j in (1, 5)]}  # fmt: skip

    forget = ["data", "forget", "--dataset", "shop", "--store", settings.store, "--user"]
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        c.post("/v1/events", json=events("cli-user"), headers=H)
        c.post("/v1/events", json=events("down-user"), headers=H)
        svc.sync.flush()
        assert main([*forget, "cli-user"]) == 0  # the server is running
        c.post("/v1/events", json=events("someone-else"), headers=H)
        svc.sync.flush()  # the next sync sees the store's forget request
        assert c.get("/v1/recommend/cli-user").json()["history_length"] == 0
        assert c.get("/v1/recommend/down-user").json()["history_length"] == 2
    assert main([*forget, "down-user"]) == 0  # the server is down; its log still holds the user
    with TestClient(create_app(settings)) as c:
        for user in ("cli-user", "down-user"):
            assert c.get(f"/v1/recommend/{user}").json()["history_length"] == 0
        assert c.get("/v1/recommend/someone-else").json()["history_length"] == 2
    logged = Path(settings.event_log).read_text()
    assert "cli-user" not in logged and "down-user" not in logged and "someone-else" in logged
