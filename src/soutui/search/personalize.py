"""Personal re-ranking of search candidates from a user's history (and optional model scores).

Signals: brand and category affinity (share of the user's items sharing the
candidate's brand / leaf category), semantic closeness of the candidate to the
user's recent items, and any `Recommender.score` output over all items. They are
blended with the query relevance on a z-score scale (weight: SearchConfig.personal_weight,
chosen on a held-apart half of the Beauty users, see benchmarks/search_personalization.py).
"""

from __future__ import annotations

import numpy as np

from soutui.data.schema import CATEGORY_SEP
from soutui.search.catalog import Catalog

RECENT = 20


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def personal_signal(
    cat: Catalog,
    vectors: np.ndarray | None,
    history: np.ndarray,
    rows: np.ndarray,
    user_scores: np.ndarray | None,
) -> tuple[np.ndarray, list[str | None]]:
    """(per-candidate personal score (C,), per-candidate reason or None)."""
    c = len(rows)
    score = np.zeros(c)
    reasons: list[str | None] = [None] * c
    recent = history[-RECENT:]
    if len(recent):
        brands = [cat.brands[h] for h in recent if cat.brands[h]]
        leaves = [cat.categories[h].split(CATEGORY_SEP)[-1] for h in recent if cat.categories[h]]
        b_aff = np.array(
            [brands.count(cat.brands[r]) / len(brands) if brands and cat.brands[r] else 0.0 for r in rows]
        )
        c_aff = np.array(
            [
                leaves.count(cat.categories[r].split(CATEGORY_SEP)[-1]) / len(leaves)
                if leaves and cat.categories[r]
                else 0.0
                for r in rows
            ]
        )
        sim = np.zeros(c)
        if vectors is not None:
            s = vectors[rows] @ vectors[recent].T  # (C, H)
            sim = s.max(axis=1)
            best = s.argmax(axis=1)
        score += b_aff + 0.5 * c_aff + sim
        for i, r in enumerate(rows.tolist()):
            if b_aff[i] >= 0.3:
                reasons[i] = f"you often buy {cat.brands[r]}"
            elif vectors is not None and sim[i] >= 0.6 and recent[best[i]] != r:
                reasons[i] = f"similar to {cat.titles[recent[best[i]]][:60]!r} you viewed"
            elif c_aff[i] >= 0.3:
                reasons[i] = f"you often browse {cat.categories[r].split(CATEGORY_SEP)[-1]}"
    if user_scores is not None:
        us = np.asarray(user_scores, np.float64)
        if us.shape != (len(cat),):
            raise ValueError(
                f"user_scores must have one score per catalogue item ({len(cat)}), got shape {us.shape}"
            )
        zs = _z(us[rows])
        score = score + zs
        for j in np.flatnonzero(zs > 1.5).tolist():
            reasons[j] = reasons[j] or "recommended for you"
    return score, reasons


def blend(relevance: np.ndarray, personal: np.ndarray, weight: float) -> np.ndarray:
    """relevance z-score + weight * personal z-score."""
    return _z(relevance) + weight * _z(personal)
