"""Rank fusion: reciprocal-rank fusion (RRF) of several ranked candidate lists.

RRF (Cormack et al. 2009) needs no score calibration between BM25 and cosine, which
is why it is the hybrid baseline the learned ranker has to beat.
"""

from __future__ import annotations

import numpy as np


def rrf(
    lists: list[np.ndarray], k: int = 60, weights: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked row lists: score(d) = sum_i w_i / (k + rank_i(d)), rank from 1. Best first."""
    weights = weights or [1.0] * len(lists)
    acc: dict[int, float] = {}
    for rows, w in zip(lists, weights, strict=True):
        for r, row in enumerate(rows.tolist(), 1):
            acc[row] = acc.get(row, 0.0) + w / (k + r)
    if not acc:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows = np.fromiter(acc.keys(), np.int64, len(acc))
    scores = np.fromiter(acc.values(), np.float64, len(acc))
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
