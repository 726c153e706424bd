"""explain=true on /v1/recommend, /v1/similar and /v1/search, and the learned ranker's TreeSHAP names."""

from __future__ import annotations

import numpy as np
import pytest

from soutui.search.features import FEATURES
from soutui.search.ltr import FEATURE_LABELS, LTRParams, LTRRanker


def _weights(row: dict, kind: str) -> list[float]:  # type: ignore[type-arg]
    return [a["weight"] for a in row["explanation"]["attributions"] if a["kind"] == kind]


def test_recommend_explains_each_result_in_the_models_own_terms(client) -> None:  # type: ignore[no-untyped-def]
    plain = client.get("/v1/recommend/u1", params={"k": 5}).json()
    assert all("explanation" not in r for r in plain["items"])
    r = client.get("/v1/recommend/u1", params={"k": 5, "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "itemknn" and [i["item_id"] for i in body["items"]] == [
        i["item_id"] for i in plain["items"]
    ]
    titles = {f"Product {j}" for j in range(40)} | {"产品 3 润肤霜"}
    for row in body["items"]:
        ex = row["explanation"]
        assert ex["method"] == "occlusion"
        hist = [a for a in ex["attributions"] if a["kind"] == "history_item"]
        assert len(hist) == body["history_length"] and {a["name"] for a in hist} <= titles
        # item-kNN's score is the sum of its neighbour evidence (+ a 1e-9 popularity prior)
        assert sum(_weights(row, "history_item")) == pytest.approx(row["score"], abs=2e-6)
        top = max(hist, key=lambda a: a["weight"])
        assert top["weight"] > 0 and row["reason"] == ex["reason"]
        assert ex["reason"] in (f"because you viewed {top['name']}", f"because you bought {top['name']}")
        assert ex["reason_zh"].startswith("因为你")


def test_recommend_explains_by_the_requested_method(client) -> None:  # type: ignore[no-untyped-def]
    """explain_method=counterfactual attributes each result's lead over the best item left out: same list,
    every history item weighed, the reason from the strongest; an unknown method is refused."""
    plain = client.get("/v1/recommend/u1", params={"k": 5, "explain": "true"}).json()
    r = client.get("/v1/recommend/u1", params={"k": 5, "explain": "true", "explain_method": "counterfactual"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in plain["items"]]
    for row, before in zip(body["items"], plain["items"], strict=True):
        ex = row["explanation"]
        assert ex["method"] == "counterfactual"
        hist = [a for a in ex["attributions"] if a["kind"] == "history_item"]
        assert len(hist) == body["history_length"]
        assert _weights(row, "history_item") != _weights(before, "history_item")  # not the neighbour evidence
        top = max(hist, key=lambda a: a["weight"])
        if top["weight"] > 0:
            assert top["name"] in ex["reason"]
    bad = client.get("/v1/recommend/u1", params={"k": 5, "explain": "true", "explain_method": "shap"})
    assert bad.status_code == 422 and "counterfactual" in bad.text


def test_the_routes_methods_are_the_attribution_modules() -> None:
    """The API's explain_method values (a Literal, for the OpenAPI schema) are exactly attribution.METHODS."""
    from typing import get_args

    from soutui.models.attribution import METHODS
    from soutui.serving.routes.recommend import ExplainMethod

    assert get_args(get_args(ExplainMethod)[0]) == METHODS


def test_a_model_that_ignores_history_names_no_history_item(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/v1/recommend/u1", params={"k": 3, "explain": "true", "model": "popularity"}).json()
    for row in body["items"]:
        assert all(w == 0 for w in _weights(row, "history_item"))
        assert row["reason"] == "based on your recent activity"


def test_trending_fallback_and_similar_items(client) -> None:  # type: ignore[no-untyped-def]
    cold = client.get("/v1/recommend/nobody", params={"k": 3, "explain": "true"}).json()
    assert cold["model"] == "trending"
    assert all(
        r["explanation"]["attributions"] == [] and r["explanation"]["method"] == "none" for r in cold["items"]
    )
    sim = client.get("/v1/similar/i1", params={"k": 4, "explain": "true"})
    assert sim.status_code == 200, sim.text
    for row in sim.json()["items"]:
        (a,) = [a for a in row["explanation"]["attributions"] if a["kind"] == "history_item"]
        assert a["name"] == "Product 1"
        assert row["explanation"]["reason"].startswith("similar to")


def test_search_explains_the_fused_score_per_retriever(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/search", params={"q": "Product 5", "k": 5, "explain": "true", "method": "hybrid"})
    assert r.status_code == 200, r.text
    for row in r.json()["items"]:
        ex = row["explanation"]
        assert ex["method"] == "rrf" and all(a["kind"] == "feature" for a in ex["attributions"])
        assert {a["name"] for a in ex["attributions"]} <= {"keyword search rank", "semantic search rank (minilm)",
                                                            "semantic search rank (use)"}  # fmt: skip
        assert sum(a["weight"] for a in ex["attributions"]) == pytest.approx(row["score"], abs=2e-6)
        assert ex["reason"].startswith("ranked mainly by") and ex["reason_zh"].startswith("主要依据")


def test_ltr_treeshap_sums_to_the_prediction_with_readable_names() -> None:
    rng = np.random.default_rng(0)
    n_q, per_q, f = 60, 12, len(FEATURES)
    x = rng.normal(size=(n_q * per_q, f)).astype(np.float32)
    gain = np.clip(np.rint(x[:, 0] * 1.5 + 1.5), 0, 3) / 3  # relevance follows bm25_title only
    groups = [per_q] * n_q
    half = n_q // 2 * per_q
    params = LTRParams(n_estimators=60, min_data_in_leaf=5, early_stopping_rounds=60)
    ranker = LTRRanker().fit(
        x[:half], gain[:half], groups[: n_q // 2], x[half:], gain[half:], groups[n_q // 2 :], params
    )
    contrib = ranker.contributions(x[:50])
    assert contrib.shape == (50, f + 1)
    np.testing.assert_allclose(contrib.sum(1), ranker.predict(x[:50]), atol=1e-9)
    # the one feature the labels depend on carries most of the attribution
    assert np.abs(contrib[:, :-1]).mean(0).argmax() == FEATURES.index("bm25_title")
    assert set(FEATURE_LABELS) == set(FEATURES) and all(
        " " in v or v in ("price", "popularity") for v in FEATURE_LABELS.values()
    )


def test_dashboard_overview_by_history_position(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/admin/explanations")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["ltr_importance"] == []  # the shop's search index has no learned ranker
    pos = d["position"]
    assert pos["model"] == "itemknn" and 0 < pos["users"] <= 50
    # every shop user has 8 events, so each position averages over every user and the shares sum to 1
    assert len(pos["mean_share"]) == 8 and sum(pos["mean_share"]) == pytest.approx(1.0, abs=1e-3)
    # item-kNN halves an event's weight per step back: the most recent event carries the most
    assert pos["mean_share"][0] == max(pos["mean_share"])
