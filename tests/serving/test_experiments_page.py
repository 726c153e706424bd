"""The dashboard's experiments panel in headless Chromium, against a real `soutui serve` whose TOML config
declares an interleaving experiment: answers carry impressions, clicks credit arms, /admin plots the result."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_shop import API_KEY, free_port, make_home, start_server

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CONFIG = """port = {port}
bundle = "{bundle}"
store = "{store}"
event_log = "{tmp}/e.jsonl"
experiment_log = "{tmp}/exp.jsonl"
api_key = "{key}"
demo = true

[[experiments]]
name = "pop-vs-knn"
kind = "interleave"
a = {{ model = "popularity" }}
b = {{ model = "itemknn" }}
"""


def test_dashboard_plots_a_live_interleaving_experiment(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path, chromium  # type: ignore[no-untyped-def]
) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text(CONFIG.format(port=free_port(), bundle=shop_bundle, store=make_home(tmp_path, shop), tmp=tmp_path, key=API_KEY))
    proc, url = start_server(cfg)
    try:
        events = []
        for u in range(40):
            rec = httpx.get(f"{url}/v1/recommend/u{u}", params={"k": 6}).json()
            tag = rec["experiment"]
            assert tag["name"] == "pop-vs-knn" and tag["arm"] is None
            # shoppers click what item-kNN placed: b should win
            knn = [r["item_id"] for r in rec["items"] if r["arm"] == "b"][:1]
            events += [{"event_id": f"c{u}", "user_id": f"u{u}", "item_id": i, "event_type": "click",
                        "impression_id": tag["impression_id"]} for i in knn]
        r = httpx.post(f"{url}/v1/events", json={"events": events}, headers={"X-API-Key": API_KEY})
        assert r.status_code == 200
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url + "/admin")
            page.wait_for_selector("#experiments-body svg.forest circle")
            text = page.inner_text("#experiments")
            assert "pop-vs-knn" in text and f"b {len(events)}" in text and "winner at 5 %: arm b (itemknn)" in text
            page.select_option("#lang", "zh")
            page.wait_for_function("document.querySelector('#experiments').innerText.includes('在线实验')")
            page.wait_for_function("document.querySelector('#experiments-body').innerText.includes('胜者')")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-experiments.png"), full_page=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
