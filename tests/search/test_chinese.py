"""Chinese and mixed Chinese/English queries through the keyword path and the semantic (USE) path."""

from __future__ import annotations

import pytest

from soutui.search.engine import SearchEngine

from .catalog_fixture import item_id

# query -> products that must be in the top 3 (keyword path: jieba tokens through tantivy)
KEYWORD = {
    "手机": ["华为 Mate 60", "小米 14 Ultra", "苹果 iPhone 15"],
    "空气净化器": ["小米空气净化器", "飞利浦 空气净化器"],
    "净化器": ["小米空气净化器", "飞利浦 空气净化器"],
    "跑步鞋": ["耐克 Air Max", "阿迪达斯 Ultraboost"],
    "华为 mate 60": ["华为 Mate 60"],
    "小米 手机": ["小米 14 Ultra"],
    "耐克 air max": ["耐克 Air Max"],
    "无线鼠标": ["罗技 MX Master 3S 无线鼠标"],
    "空调": ["美的 变频空调", "格力 空调"],
}
# paraphrases without shared tokens: only the multilingual semantic path can answer (top 3 of 42 must hold one)
PHONES = ["华为 Mate 60", "小米 14 Ultra", "苹果 iPhone 15", "Apple iPhone 15"]
SEMANTIC = {
    "智能电话": PHONES,  # "smart telephone"
    "手提电脑": ["联想 ThinkPad"],  # "portable computer" -> laptop
    "洗衣服的机器": ["西门子 滚筒洗衣机"],  # "machine that washes clothes"
    "零食": ["三只松鼠 坚果礼盒"],  # "snacks"
}


@pytest.mark.parametrize("query,expected", list(KEYWORD.items()))
def test_keyword_path_retrieves_chinese_products(
    engine: SearchEngine, query: str, expected: list[str]
) -> None:
    hits, _ = engine.search(query, k=3, method="bm25")
    got = [h.item_id for h in hits]
    for prefix in expected:
        assert item_id(prefix) in got, (query, [h.title for h in hits])
    assert "in title" in hits[0].reason


@pytest.mark.parametrize("query,accepted", list(SEMANTIC.items()))
def test_semantic_path_retrieves_chinese_products(
    engine: SearchEngine, query: str, accepted: list[str]
) -> None:
    assert engine.primary_encoder(engine.parse(query)) == "use"
    hits, _ = engine.search(query, k=3, method="dense")
    assert {h.item_id for h in hits} & {item_id(p) for p in accepted}, (query, [h.title for h in hits])


def test_semantic_path_finds_exact_products_too(engine: SearchEngine) -> None:
    hits, _ = engine.search("华为手机", k=3, method="dense")
    assert item_id("华为 Mate 60") in [h.item_id for h in hits]
    hits, _ = engine.search("空气净化器", k=2, method="dense")
    assert {h.item_id for h in hits} == {item_id("小米空气净化器"), item_id("飞利浦 空气净化器")}


def test_mixed_query_in_hybrid_and_english_query_reaches_english_products(engine: SearchEngine) -> None:
    hits, _ = engine.search("iPhone 手机", k=2, method="hybrid")
    assert item_id("苹果 iPhone 15") in [h.item_id for h in hits]
    hits, _ = engine.search("noise cancelling headphones", k=2, method="hybrid")
    assert hits[0].item_id == item_id("Sony WH-1000XM5")
