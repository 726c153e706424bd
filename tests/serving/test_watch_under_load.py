"""Zero-downtime pickup of a retrained bundle: a real `soutui serve --watch` under load.

Client threads hammer /v1/recommend on the real server (uvicorn in a subprocess) while
`publish` (what `soutui retrain` writes on promotion) puts a new bundle with a grown
catalogue into the watched directory. Every request must succeed, and the answers must
switch to the new bundle without a restart.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from serving_shop import API_KEY, build_shop_bundle, free_port, make_home, start_server, write_config

from soutui.data.sequences import SequenceData
from soutui.models.itemknn import ItemKNN
from soutui.serving.bundle import read_manifest
from soutui.serving.retrain_bundle import publish


def _hammer(url: str, stop: threading.Event, seen: dict[str, int], failures: list[str], seed: int) -> None:
    """Recommend requests back to back until `stop`; counts answers per bundle, keeps every failure."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                r = client.get(f"/v1/recommend/u{int(rng.integers(60))}", params={"k": 10})
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                    continue
                body = r.json()
                if not body["items"]:
                    failures.append(f"empty list for {body['user_id']}")
                seen[body["bundle"]] = seen.get(body["bundle"], 0) + 1
            except httpx.HTTPError as exc:  # a refused or dropped connection is a failed request too
                failures.append(f"{type(exc).__name__}: {exc}")


def test_watching_server_picks_up_a_new_bundle_under_load_without_a_failed_request(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    items, events = shop
    bundles = tmp_path / "bundles"
    old = build_shop_bundle(bundles, items, events, search=False)
    cfg = write_config(
        tmp_path / "serve.toml", port=free_port(), bundles_dir=str(bundles), store=make_home(tmp_path, shop),
        event_log=str(tmp_path / "events.jsonl"), api_key=API_KEY, demo=True, watch_interval_s=0.2,
    )  # fmt: skip
    proc, url = start_server(cfg)
    stop = threading.Event()
    seen: list[dict[str, int]] = [{} for _ in range(3)]
    failures: list[str] = []
    threads = [threading.Thread(target=_hammer, args=(url, stop, seen[i], failures, i)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)  # load before the new bundle
        grown = pd.concat(
            [
                items,
                pd.DataFrame({"item_id": ["i40"], "title": ["Product 40"], "category": ["Home > Kitchen"]}),
            ]
        )
        data = SequenceData.from_events(events, grown)
        decision = {"protocol": "test", "candidate": {"NDCG@10": 0.5}, "serving": {"NDCG@10": 0.4}}
        new = publish(
            bundles, "shop", grown, data, "itemknn", ItemKNN().fit(data), decision, with_search=False
        )
        new_version = f"shop-{read_manifest(new)['version']}"
        deadline = time.time() + 30
        while time.time() < deadline and not any(s.get(new_version) for s in seen):
            time.sleep(0.1)
        time.sleep(1.0)  # load after the switch
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        health = httpx.get(url + "/healthz", timeout=10).json()
        info = httpx.get(url + "/v1/admin/bundle", timeout=10).json()
        evaluation = httpx.get(url + "/v1/admin/evaluation", timeout=10).json()
        monitoring = httpx.get(url + "/v1/admin/monitoring", timeout=10)
        proc.terminate()
        proc.wait(timeout=30)
    total = {k: sum(s.get(k, 0) for s in seen) for k in {k for s in seen for k in s}}
    old_version = f"shop-{read_manifest(old)['version']}"
    assert failures == [], failures[:5]
    assert total.get(old_version, 0) > 20 and total.get(new_version, 0) > 20, total  # both served under load
    assert set(total) == {old_version, new_version}
    assert health["bundle"] == new_version
    # the dashboard's endpoints read a retrain bundle: the gate's figures and the data's end are in it
    assert info["manifest"]["gate"]["candidate"] == {"NDCG@10": 0.5} and info["manifest"]["data_until"] > 0
    assert evaluation["gate"]["protocol"] == "test" and monitoring.status_code == 200
