"""Chinese queries on the real (English) Amazon Beauty catalogue, through the default index config.

The index is built like a bundle builds it (SearchConfig defaults: MiniLM + multilingual USE,
calibrated dense floors). Catalogue embeddings come from the shared on-disk cache
($SOUTUI_CACHE/embeddings), so only the first session on a machine pays for embedding.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soutui.data.importers import amazon_beauty
from soutui.search.engine import SearchEngine

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# query -> words of which one must be in an English title that names the product
PRODUCTS = {
    "口红": ("lipstick", "lip"),  # lipstick
    "洗发水": ("shampoo",),  # shampoo
    "指甲油": ("nail",),  # nail polish
    "防晒霜": ("sunscreen", "spf", "sun"),  # sunscreen
}
# far outside a beauty shop: the calibrated floor must leave nothing rather than junk
UNRELATED = ["手机", "汽车轮胎", "猫粮"]


@pytest.fixture(scope="module")
def beauty(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    if not (DATA / "amazon-beauty" / "beauty_item_titles.tsv").is_file():
        pytest.skip(f"real Amazon Beauty data not found in {DATA}")
    items = amazon_beauty.build(DATA).tables["items"]
    out = tmp_path_factory.mktemp("beauty") / "index"
    SearchEngine.build(items, out)
    return SearchEngine.load(out)


def test_default_index_has_both_encoders_and_calibrated_floors(beauty: SearchEngine) -> None:
    assert set(beauty.vectors) == {"minilm", "use"}
    assert all(0.0 < t < 1.0 for t in beauty.min_similarity.values())
    assert beauty.primary_encoder(beauty.parse("口红")) == "use"
    assert beauty.primary_encoder(beauty.parse("lipstick")) == "minilm"


@pytest.mark.parametrize("method", ["ltr", "hybrid", "dense"])
@pytest.mark.parametrize("query", list(PRODUCTS))
def test_chinese_query_finds_the_english_products(beauty: SearchEngine, query: str, method: str) -> None:
    hits, _ = beauty.search(query, k=5, method=method)
    titles = [h.title for h in hits]
    named = [t for t in titles if any(w in t.lower() for w in PRODUCTS[query])]
    assert len(hits) == 5 and len(named) >= 4, (query, titles)
    assert all(h.title and h.title != h.item_id for h in hits)


@pytest.mark.parametrize("query", UNRELATED)
def test_unrelated_query_gets_no_answer_rather_than_junk(beauty: SearchEngine, query: str) -> None:
    for method in ("ltr", "dense"):
        assert beauty.search(query, k=5, method=method)[0] == [], (query, method)


def test_untitled_items_are_never_dense_hits_nor_shown_as_ids(beauty: SearchEngine) -> None:
    untitled = [i for i, t in enumerate(beauty.catalog.titles) if not t]
    assert untitled  # the real catalogue has a few items without a title
    for enc, vi in beauty.vectors.items():
        assert not vi.vectors[untitled].any(), enc  # zero vectors: cosine 0, below every floor
    assert all(beauty.catalog.display_title(i) != beauty.catalog.item_ids[i] for i in untitled)
