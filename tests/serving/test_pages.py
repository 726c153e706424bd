"""Storefront and dashboard in headless Chromium against a real server process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from serving_shop import API_KEY, free_port, make_home, start_server, write_config

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame], shop_bundle: Path):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("pages")
    cfg = write_config(tmp / "serve.toml", port=free_port(), bundle=str(shop_bundle), bundles_dir=str(shop_bundle.parent),
                       store=make_home(tmp, shop),
                       event_log=str(tmp / "e.jsonl"), api_key=API_KEY, demo=True)
    proc, url = start_server(cfg)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server: str, chromium):  # type: ignore[no-untyped-def]
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


def test_search_product_similar_and_reasons(page, server: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(server + "/")
    page.wait_for_selector("#trending .card")
    page.fill("#q", "Product 5")
    page.click("#search-btn")
    page.wait_for_selector("#results .card")
    first = page.locator("#results .card").first
    assert "Product 5" in first.inner_text()
    assert page.locator("#results .card .reason").first.inner_text().startswith("matches")
    first.click()
    page.wait_for_selector("#similar .card")
    assert page.inner_text("#product-title") == "Product 5"
    reasons = page.locator("#similar .card .reason").all_inner_texts()
    assert reasons and all(r == "similar to Product 5" for r in reasons)
    page.screenshot(path=str(ARTIFACTS / "product-page.png"), full_page=True)


def test_recommended_for_you_and_chinese_title(page, server: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/#/")
    page.fill("#user", "u3")
    page.press("#user", "Enter")
    page.dispatch_event("#user", "change")
    page.wait_for_selector("#recs .card")
    recs = page.locator("#recs .card .reason").all_inner_texts()
    assert recs and all(recs) and recs[0].startswith("because you")
    page.goto(server + "/#/item/i3")
    page.wait_for_selector("#product-title")
    title = page.locator("#product-title")
    assert title.inner_text() == "产品 3 润肤霜"
    assert title.bounding_box()["width"] > 60  # type: ignore[index]
    title.screenshot(path=str(ARTIFACTS / "chinese-title.png"))
    page.screenshot(path=str(ARTIFACTS / "storefront-zh.png"), full_page=True)


def test_dashboard_shows_manifest_stats_and_reload(page, server: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/admin")
    page.wait_for_selector("#version")
    assert page.inner_text("#version").startswith("shop-")
    page.wait_for_selector("#stats table")
    page.evaluate(f"localStorage.setItem('soutui.key', '{API_KEY}')")
    page.click("#reload-btn")
    page.wait_for_function("document.querySelector('#reload-log').textContent.startsWith('loaded')")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
