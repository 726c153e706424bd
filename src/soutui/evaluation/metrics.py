"""Ranking metrics as small pure functions.

Two shapes of input:
- per-query ranked lists + relevance dicts (`ranked`, `rels`), for search and
  multi-target recommendation; graded relevance is supported;
- the 0-based rank of a single held-out target, for leave-one-out
  recommendation (HR, NDCG, MRR reduce to closed forms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Ranked = Sequence[str] | Sequence[int] | np.ndarray
Rels = Mapping  # item -> relevance grade (>0 means relevant)


def _rel_list(ranked: Ranked, rels: Rels, k: int) -> np.ndarray:
    return np.array([float(rels.get(x, 0.0)) for x in list(ranked)[:k]], dtype=np.float64)


def precision_at_k(ranked: Ranked, rels: Rels, k: int) -> float:
    return float((_rel_list(ranked, rels, k) > 0).sum() / k)


def recall_at_k(ranked: Ranked, rels: Rels, k: int) -> float:
    n_rel = sum(1 for v in rels.values() if v > 0)
    if n_rel == 0:
        return 0.0
    return float((_rel_list(ranked, rels, k) > 0).sum() / n_rel)


def hit_rate_at_k(ranked: Ranked, rels: Rels, k: int) -> float:
    return float((_rel_list(ranked, rels, k) > 0).any())


def f1_at_k(ranked: Ranked, rels: Rels, k: int) -> float:
    p, r = precision_at_k(ranked, rels, k), recall_at_k(ranked, rels, k)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def reciprocal_rank(ranked: Ranked, rels: Rels, k: int | None = None) -> float:
    for i, x in enumerate(list(ranked)[: k or None]):
        if rels.get(x, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def average_precision(ranked: Ranked, rels: Rels, k: int | None = None) -> float:
    n_rel = sum(1 for v in rels.values() if v > 0)
    if n_rel == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, x in enumerate(list(ranked)[: k or None]):
        if rels.get(x, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_rel


def dcg(gains: np.ndarray, exponential: bool = True) -> float:
    g = (np.power(2.0, gains) - 1.0) if exponential else gains
    return float((g / np.log2(np.arange(2, len(g) + 2))).sum())


def ndcg_at_k(ranked: Ranked, rels: Rels, k: int, exponential: bool = True) -> float:
    """Graded NDCG@k; the ideal is built from all judged relevances in `rels`.

    `exponential=True` uses gain 2^rel - 1 (Burges et al.), else linear gain rel.
    With binary rels both give the same value.
    """
    ideal = np.sort(np.array([v for v in rels.values() if v > 0], dtype=np.float64))[::-1][:k]
    idcg = dcg(ideal, exponential)
    if idcg == 0:
        return 0.0
    return dcg(_rel_list(ranked, rels, k), exponential) / idcg


def hr_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Hit rate@k given 0-based ranks of the target (recall@k with one relevant item)."""
    return float((np.asarray(ranks) < k).mean()) if len(ranks) else 0.0


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0).mean()) if len(r) else 0.0


def mrr_from_ranks(ranks: np.ndarray, k: int) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.where(r < k, 1.0 / (r + 1.0), 0.0).mean()) if len(r) else 0.0


def precision_from_ranks(ranks: np.ndarray, k: int) -> float:
    return hr_from_ranks(ranks, k) / k


def f1_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Mean per-user F1@k with one relevant item: 2/(k+1) on a hit, else 0."""
    return hr_from_ranks(ranks, k) * 2.0 / (k + 1)


def map_from_ranks(ranks: np.ndarray, k: int) -> float:
    """With a single relevant item, average precision equals reciprocal rank."""
    return mrr_from_ranks(ranks, k)
