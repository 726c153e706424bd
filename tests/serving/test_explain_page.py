"""The storefront's "why this?" control in headless Chromium against a real server process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_shop import API_KEY, free_port, make_home, start_server, write_config

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path
):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("why")
    cfg = write_config(tmp / "serve.toml", port=free_port(), bundle=str(shop_bundle), bundles_dir=str(shop_bundle.parent),
                       store=make_home(tmp, shop), event_log=str(tmp / "e.jsonl"), api_key=API_KEY, demo=True)  # fmt: skip
    proc, url = start_server(cfg)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_why_this_shows_the_attribution_as_bars(server: str, chromium) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    api = httpx.get(
        server + "/v1/recommend/u3", params={"k": 12, "diverse": "true", "explain": "true"}
    ).json()
    first = api["items"][0]
    expected = [a for a in first["explanation"]["attributions"] if a["weight"] != 0][:6]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server + "/#/")
        page.fill("#user", "u3")
        page.press("#user", "Enter")  # fires `change` now, not when the click below blurs the box
        page.wait_for_selector("#recs .card")
        at = page.url
        card = page.locator("#recs .card").first
        assert card.get_attribute("data-item") == first["item_id"]
        card.locator(".why").click()
        page.wait_for_selector("#recs .card .whybox .bar-row")
        assert page.url == at  # the button did not follow the card's link
        box = card.locator(".whybox")
        assert first["explanation"]["reason"] in box.inner_text()
        labels = box.locator(".bar-label").all_inner_texts()
        assert labels == [a["name"] for a in expected]
        widths = [
            float(w)
            for w in box.locator(".bar").evaluate_all("bs => bs.map(b => b.getBoundingClientRect().width)")
        ]
        strongest = max(range(len(expected)), key=lambda i: abs(expected[i]["weight"]))
        assert widths[strongest] == max(widths) and min(widths) > 0
        page.screenshot(path=str(ARTIFACTS / "why-this.png"), full_page=True)
        card.locator(".why").click()  # a second click closes it
        assert card.locator(".whybox").count() == 0

        page.evaluate("localStorage.setItem('soutui.lang', 'zh')")
        page.goto(server + "/#/item/i1")
        page.wait_for_selector("#similar .card")
        page.locator("#similar .card .why").first.click()
        page.wait_for_selector("#similar .whybox")
        text = page.locator("#similar .whybox").first.inner_text()
        assert "推荐理由" in text and "相似" in text
        page.goto(server + "/admin")
        page.wait_for_selector("#explain-position .bar-row")
        assert page.locator("#explain-position .bar-label").first.inner_text() == "最近一个"
        page.screenshot(path=str(ARTIFACTS / "dashboard-explain.png"), full_page=True)
        browser.close()
