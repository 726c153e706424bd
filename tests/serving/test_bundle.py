"""Bundles: verification refuses corrupt/incompatible ones and the server keeps serving the old one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_shop import API_KEY, build_shop_bundle, make_shop

from soutui.serving.bundle import BundleError, Catalogue, load_bundle, newest_bundle, verify_bundle

H = {"X-API-Key": API_KEY}


def _copy(src: Path, dst_root: Path, name: str) -> Path:
    dst = dst_root / name
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(path: Path, **changes: object) -> None:
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_verify_and_load(shop_bundle: Path) -> None:
    m = verify_bundle(shop_bundle)
    assert m["n_items"] == 40 and set(m["models"]) == {"popularity", "itemknn"}
    assert "items.parquet" in m["files"] and any(f.startswith("models/itemknn/") for f in m["files"])
    b = load_bundle(shop_bundle)
    assert b.default == "itemknn" and len(b.catalogue) == 40


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("checksum", "checksum mismatch"),
        ("format", "bundle format 99"),
        ("manifest", "not valid JSON"),
        ("n_items", "n_items"),
        ("missing", "missing"),
        ("vocab", "scores 40 items but the catalogue has 39"),
    ],
)
def test_bad_bundles_are_refused(tmp_path: Path, shop_bundle: Path, breakage: str, message: str) -> None:
    bad = _copy(shop_bundle, tmp_path, "bad")
    if breakage == "checksum":
        (bad / "models/popularity/scores.npy").write_bytes(b"corrupt")
    elif breakage == "format":
        _edit_manifest(bad, format_version=99)
    elif breakage == "manifest":
        (bad / "manifest.json").write_text("{oops")
    elif breakage == "n_items":
        _edit_manifest(bad, n_items=41)
    elif breakage == "missing":
        (bad / "items.parquet").unlink()
    elif breakage == "vocab":  # a catalogue with one item fewer than the models know
        import pandas as pd

        from soutui.serving.bundle import sha256_file

        items = pd.read_parquet(bad / "items.parquet").iloc[:-1]
        items.to_parquet(bad / "items.parquet", index=False)
        m = json.loads((bad / "manifest.json").read_text())
        m["files"]["items.parquet"] = sha256_file(bad / "items.parquet")
        m["n_items"] = 39
        (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=message):
        load_bundle(bad)


def test_reload_swaps_good_and_refuses_bad(client, tmp_path: Path, shop_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    old = client.get("/healthz").json()["bundle"]
    bad = _copy(shop_bundle, tmp_path, "corrupt")
    (bad / "items.parquet").write_bytes(b"garbage")
    r = client.post("/v1/admin/reload", json={"bundle": str(bad)}, headers=H)
    assert r.status_code == 409 and "checksum mismatch" in r.json()["detail"] and old in r.json()["detail"]
    assert client.get("/healthz").json()["bundle"] == old
    assert client.get("/v1/recommend/u1").status_code == 200  # still serving
    items, events = make_shop(seed=1)
    new = build_shop_bundle(tmp_path / "new", items, events, default="popularity")
    r = client.post("/v1/admin/reload", json={"bundle": str(new)}, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["previous"] == old and client.get("/healthz").json()["bundle"] == r.json()["bundle"] != old
    assert client.get("/v1/recommend/u1").json()["model"] == "popularity"
    assert 'bundle="' + r.json()["bundle"] in client.get("/metrics").text


def test_newest_bundle_is_found(tmp_path: Path) -> None:
    items, events = make_shop()
    a = build_shop_bundle(tmp_path, items, events, version="a")
    b = build_shop_bundle(tmp_path, items, events, version="b")
    assert newest_bundle(tmp_path) == b != a
    (tmp_path / ".tmp-shop-c").mkdir()  # a bundle being written is never picked
    assert newest_bundle(tmp_path) == b
    with pytest.raises(BundleError, match="bundle build"):
        newest_bundle(tmp_path / "none")


def test_untitled_items_are_never_shown_as_their_id() -> None:
    cat = Catalogue.from_frame(pd.DataFrame({
        "item_id": ["A1", "B2", "C3"], "title": ["Rose lipstick", None, ""],
        "brand": ["acme", "acme", None], "category": ["Beauty > Lips", "Beauty > Skin > Sunscreen", None],
    }))  # fmt: skip
    assert [cat.item_json(i)["title"] for i in range(3)] == ["Rose lipstick", "", ""]
    assert [cat.label(i) for i in range(3)] == ["Rose lipstick", "acme Sunscreen", "an item"]


def test_itemknn_affinity_fast_path_equals_the_contracts_score_lift(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Explanations read ItemKNN's similarity matrix directly; it must equal the contract's
    reference definition (the score lift of a one-item history), which popularity gets as 0."""
    from soutui.data.sequences import SequenceData
    from soutui.models.base import Recommender
    from soutui.models.itemknn import ItemKNN
    from soutui.models.popularity import Popularity

    data = SequenceData.from_events(shop[1], shop[0])
    knn, pop = ItemKNN().fit(data), Popularity().fit(data)
    items, hist = np.arange(0, data.n_items, 3), data.sequences[1][-6:]
    fast = knn.item_affinity(items, hist)
    assert fast.shape == (len(items), len(hist)) and (fast > 0).any()
    np.testing.assert_allclose(fast, Recommender.item_affinity(knn, items, hist), atol=1e-9)
    np.testing.assert_allclose(pop.item_affinity(items, hist), 0.0, atol=1e-9)


def test_itemknn_single_history_fast_path_equals_the_sparse_product(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The served one-history score (bincount over similarity rows) = the batch path (sparse product)."""
    from soutui.data.sequences import SequenceData
    from soutui.models.itemknn import ItemKNN

    data = SequenceData.from_events(shop[1], shop[0])
    knn = ItemKNN().fit(data)
    hists = [data.sequences[u] for u in range(12)] + [np.array([3, 3, 5], np.int64), np.zeros(0, np.int64)]
    batch = knn.score(hists)  # > 1 history: the sparse product
    for row, h in enumerate(hists):
        np.testing.assert_allclose(knn.score([h])[0], batch[row], rtol=1e-12, atol=1e-15)


def test_top_k_equals_a_full_sort_with_ties_and_non_finite_scores() -> None:
    """The served top-k (block maxima, then a small sort) against the plain reference: a stable
    full sort by score, finite scores only, ties to the lower index."""
    from soutui.models.base import top_k

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 5000))
        s = rng.integers(0, int(rng.integers(1, 50)), n).astype(np.float64)  # many ties
        if trial % 3 == 0:
            s[rng.choice(n, n // 4 + 1)] = rng.choice([np.inf, -np.inf, np.nan])
        k = int(rng.integers(1, 120))
        finite = np.flatnonzero(np.isfinite(s))
        ref = finite[np.lexsort((finite, -s[finite]))][:k]
        got, vals = top_k(s, k, block=int(rng.choice([4, 16, 128])))
        assert got.tolist() == ref.tolist(), (trial, n, k)
        np.testing.assert_array_equal(vals, s[ref])
