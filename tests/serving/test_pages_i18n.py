"""Chinese interface and Chinese search in the storefront and dashboard (headless Chromium, real server).

The bundle is built from the real Amazon Beauty catalogue and purchases (English titles),
so 口红 ("lipstick") must reach English lipstick titles through the multilingual encoder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_shop import API_KEY, build_shop_bundle, free_port, make_home, start_server, write_config

from soutui.data.importers import amazon_beauty

pytestmark = pytest.mark.browser
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# catalogue embeddings and the ONNX graph are cached across sessions (shared with tests/search)
os.environ.setdefault("SOUTUI_CACHE", str(Path(tempfile.gettempdir()) / "soutui-test-cache"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (DATA / "amazon-beauty" / "beauty_item_titles.tsv").is_file():
        pytest.skip(f"real Amazon Beauty data not found in {DATA}")
    tables = amazon_beauty.build(DATA).tables
    items = tables["items"][["item_id", "title", "attributes"]]
    events = tables["events"][["event_id", "user_id", "item_id", "event_type", "ts"]]
    tmp = tmp_path_factory.mktemp("pages-i18n")
    bundle = build_shop_bundle(tmp / "bundles", items, events)
    cfg = write_config(
        tmp / "serve.toml",
        port=free_port(),
        bundle=str(bundle),
        bundles_dir=str(bundle.parent),
        store=make_home(tmp, (items, events)),
        event_log=str(tmp / "e.jsonl"),
        demo=True,
        api_key=API_KEY,
    )
    proc, url = start_server(cfg, timeout=120)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server: str, chromium: Any) -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")


def test_language_switch_is_remembered_across_reloads(page: Any, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(server + "/")
    page.wait_for_selector("#trending .card")
    assert page.inner_text("#search-btn") == "Search"
    page.select_option("#lang", "zh")
    assert page.inner_text("#search-btn") == "搜索"
    page.reload()
    page.wait_for_selector("#trending .card")
    assert page.input_value("#lang") == "zh"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.inner_text("#search-btn") == "搜索"
    assert page.get_attribute("#q", "placeholder") == "搜索商品…"
    assert page.inner_text("#trending h2") == "本周热门"
    assert page.inner_text("#filters h3") == "筛选"
    # the dashboard shares the choice
    page.goto(server + "/admin")
    page.wait_for_selector("#version")
    assert page.inner_text("#reload-btn") == "加载最新模型包"
    assert "模型" in page.inner_text("#bundle table")
    page.wait_for_selector("#stats table")
    assert "接口" in page.inner_text("#stats table")
    page.screenshot(path=str(ARTIFACTS / "dashboard-zh.png"), full_page=True)


def test_chinese_search_box_gives_the_api_answer(page: Any, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(server + "/")
    page.evaluate("localStorage.setItem('soutui.lang', 'zh')")
    page.reload()
    page.fill("#q", "口红")
    page.click("#search-btn")
    page.wait_for_selector("#results .card")
    shown = page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.item)")
    api = httpx.get(server + "/v1/search", params={"q": "口红", "k": 24}, timeout=30).json()
    assert shown == [it["item_id"] for it in api["items"]]
    titles = page.locator("#results .card .title").all_inner_texts()
    assert sum("lip" in t.lower() for t in titles[:5]) >= 4, titles[:5]
    assert not set(titles) & set(shown)  # no bare ids as titles
    assert page.inner_text("#results h2").startswith("“口红”的搜索结果")
    reason = page.locator("#results .card .reason").first.inner_text()
    assert reason.startswith("与“口红”意思相近"), reason
    page.screenshot(path=str(ARTIFACTS / "storefront-zh-search.png"), full_page=True)
    # back to English: everything follows
    page.select_option("#lang", "en")
    page.wait_for_function("(document.querySelector('#results h2') || {}).textContent?.startsWith('Results for')")
    assert page.inner_text("#search-btn") == "Search"
    assert page.inner_text("#results h2").startswith("Results for “口红”")
