"""Rank fusion: reciprocal-rank fusion (RRF) of several ranked candidate lists.

RRF (Cormack et al. 2009) needs no score calibration between BM25 and cosine, which
is why it is the hybrid baseline the learned ranker has to beat.
"""

from __future__ import annotations

import numpy as np


def rrf(
    lists: list[np.ndarray], k: int = 60, weights: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked row lists: score(d) = sum_i w_i / (k + rank_i(d)), rank from 1. Best first, ties by row."""
    weights = weights or [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ValueError(f"{len(weights)} weights for {len(lists)} lists")
    parts = [
        (np.asarray(r, np.int64), w / (k + np.arange(1, len(r) + 1)))
        for r, w in zip(lists, weights, strict=True)
    ]
    rows_all = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
    if len(rows_all) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows, inv = np.unique(rows_all, return_inverse=True)
    scores = np.bincount(inv, weights=np.concatenate([s for _, s in parts]))
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
