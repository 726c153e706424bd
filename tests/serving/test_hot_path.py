"""The lean request path: orjson answers still match the documented models; the search
result cache is exact (same answer), skips personalised searches and never outlives a bundle."""

from __future__ import annotations

from pathlib import Path

from serving_shop import API_KEY, build_shop_bundle, make_shop

from soutui.serving import schemas as S

H = {"X-API-Key": API_KEY}


def test_fast_json_answers_match_the_response_models(client) -> None:  # type: ignore[no-untyped-def]
    # routes return orjson bytes directly (no FastAPI re-validation), so check the shapes here
    checks = [
        ("/v1/recommend/u1", S.RecommendResponse),
        ("/v1/recommend/nobody", S.RecommendResponse),
        ("/v1/trending", S.TrendingResponse),
        ("/v1/similar/i5", S.SimilarResponse),
        ("/v1/search?q=Product", S.SearchResponse),
        ("/v1/items/i5", S.Item),
    ]
    for path, model in checks:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", (path, r.text)
        model.model_validate_json(r.content, strict=False)
    assert client.get("/v1/items/nope").status_code == 404


def test_search_cache_is_exact_and_skips_personalised(client) -> None:  # type: ignore[no-untyped-def]
    def cache() -> dict[str, int]:
        return client.get("/v1/admin/stats").json()["search_cache"]

    params = {"q": "Product 5", "k": 5, "sort": "price_asc"}
    c0 = cache()
    first = client.get("/v1/search", params=params).json()
    second = client.get("/v1/search", params=params).json()
    c1 = cache()
    assert first == second
    assert (c1["hits"] - c0["hits"], c1["misses"] - c0["misses"]) == (1, 1)
    other = client.get("/v1/search", params={**params, "k": 3}).json()  # another parameter => another entry
    assert len(other["items"]) <= 3 and cache()["misses"] == c1["misses"] + 1
    for _ in range(2):  # personalised answers depend on live history: never cached
        assert client.get("/v1/search", params={**params, "user_id": "u1"}).status_code == 200
    c2 = cache()
    assert (c2["hits"], c2["misses"]) == (c1["hits"], c1["misses"] + 1)


def test_search_cache_does_not_outlive_a_reload(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    params = {"q": "Product 5", "k": 5}
    before = client.get("/v1/search", params=params).json()
    assert client.get("/v1/search", params=params).json() == before  # cached now
    items, events = make_shop(seed=1)
    items["title"] = [f"Renamed {t}" for t in items["title"]]
    new = build_shop_bundle(tmp_path / "new", items, events, version="renamed")
    r = client.post("/v1/admin/reload", json={"bundle": str(new)}, headers=H)
    assert r.status_code == 200, r.text
    after = client.get("/v1/search", params=params).json()
    assert after["bundle"] == r.json()["bundle"] != before["bundle"]
    assert after["items"] and all(it["title"].startswith("Renamed") for it in after["items"])


def test_reload_refreezes_a_frozen_heap_and_frees_the_old_bundle(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import gc
    import weakref

    old = weakref.ref(client.app.state.service.bundle)
    new = build_shop_bundle(tmp_path / "new", *make_shop(seed=2), version="refrozen")
    gc.freeze()  # as `soutui serve` does after start
    try:
        r = client.post("/v1/admin/reload", json={"bundle": str(new)}, headers=H)
        assert r.status_code == 200, r.text
        assert gc.get_freeze_count() > 0 and old() is None
    finally:
        gc.unfreeze()


def test_reload_with_a_nul_byte_path_is_refused_not_500(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/admin/reload", json={"bundle": "a\x00b"}, headers=H)  # found by the fuzz test
    assert r.status_code == 409 and "still serving" in r.json()["detail"]
