"""faiss HNSW agrees with exact inner-product search."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from soutui.search.vector import VectorIndex


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Unit vectors with low intrinsic dimension (16-d clusters projected to d), like text embeddings."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(50, 16))
    proj = np.random.default_rng(1).normal(size=(16, d))
    z = centres[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, 16))
    x = z @ proj
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_recall_at_10_vs_flat_ip(tmp_path: Path) -> None:
    x = _clustered(6000, 64, 0)
    queries = _clustered(200, 64, 1)
    vi = VectorIndex.build(x)
    assert vi.ann is not None
    vi.save(tmp_path, "enc")
    vi = VectorIndex.load(tmp_path, "enc")
    flat = faiss.IndexFlatIP(64)
    flat.add(x)
    _, exact = flat.search(queries, 10)
    hits = sum(
        len(set(vi.search(q, 10)[0].tolist()) & set(e.tolist())) for q, e in zip(queries, exact, strict=True)
    )
    recall = hits / exact.size
    assert recall >= 0.95, recall
    # the numpy reference path is the exact answer
    rows, scores = vi.search_exact(queries[0], 10)
    assert rows.tolist() == exact[0].tolist()


def test_exact_search_within_a_subset() -> None:
    x = _clustered(500, 16, 2)
    vi = VectorIndex.build(x)
    assert vi.ann is None  # small catalogues are scanned exactly
    subset = np.arange(100, 200)
    rows, _ = vi.search_exact(x[150], 5, subset)
    assert rows[0] == 150 and set(rows.tolist()) <= set(subset.tolist())


def test_calibrated_floor_lets_about_false_hits_items_through() -> None:
    from soutui.search.vector import calibrate_min_similarity

    items = _clustered(3000, 64, seed=2)
    calib, fresh = _clustered(300, 64, seed=3), _clustered(300, 64, seed=4)
    for false_hits in (1.0, 5.0):
        floor = calibrate_min_similarity(items, calib, false_hits)
        above = (fresh @ items.T >= floor).sum(axis=1)  # unseen unrelated queries
        assert 0.5 * false_hits <= above.mean() <= 2.0 * false_hits, (false_hits, above.mean())
    assert calibrate_min_similarity(items, calib, 1.0) > calibrate_min_similarity(items, calib, 5.0)
    assert calibrate_min_similarity(items[:0], calib) == -1.0


@pytest.mark.parametrize("share", [0.05, 0.2, 0.6])
def test_filtered_hnsw_agrees_with_the_exact_scan_of_the_subset(share: float) -> None:
    x = _clustered(6000, 64, 0)
    queries = _clustered(50, 64, 1)
    vi = VectorIndex.build(x)
    mask = np.random.default_rng(5).random(len(x)) < share
    subset = np.flatnonzero(mask)
    hits = 0
    for q in queries:
        rows, scores = vi.search_filtered(q, 10, mask, exact_limit=0)  # force the HNSW path
        assert mask[rows].all() and (np.diff(scores) <= 1e-6).all()
        hits += len(set(rows.tolist()) & set(vi.search_exact(q, 10, subset)[0].tolist()))
    assert hits / (10 * len(queries)) >= 0.95
    # small subsets take the exact path, which is the reference itself
    small = np.zeros(len(x), bool)
    small[:50] = True
    assert (
        vi.search_filtered(queries[0], 5, small)[0].tolist()
        == vi.search_exact(queries[0], 5, np.arange(50))[0].tolist()
    )
