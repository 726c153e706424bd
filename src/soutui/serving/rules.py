"""Business rules on every list: stock and category filters, exclusions, pins, boosts, diversity.

Rules run on a model's score vector over the whole catalogue, so each is a cheap
numpy mask or a small greedy pass over the top candidates — never a per-item loop
over the catalogue at request time.
"""

from __future__ import annotations

import numpy as np

from soutui.models.base import top_k
from soutui.serving.bundle import Catalogue
from soutui.serving.settings import RulesConfig


def allowed_mask(
    catalogue: Catalogue,
    rules: RulesConfig,
    category: str | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean (I,) of items a list may show."""
    mask = catalogue.in_stock.copy() if rules.in_stock_only else np.ones(len(catalogue), bool)
    if category:
        mask &= catalogue.category_mask(category)
    if exclude is not None and len(exclude):
        mask[exclude] = False
    return mask


def select(
    scores: np.ndarray,
    allowed: np.ndarray,
    k: int,
    rules: RulesConfig,
    catalogue: Catalogue,
    vectors: np.ndarray | None = None,
    pinned: list[int] | None = None,
    boosted: list[int] | None = None,
    diverse: bool = False,
) -> list[tuple[int, float, bool]]:
    """Pick k items: (item index, score, is_pinned), pinned first, then best by (boosted) score.

    Scores are min-max scaled over the candidate pool so `rules.boost` means the same
    whatever the model's score scale.
    """
    masked = np.where(allowed, scores.astype(np.float64, copy=False), -np.inf)
    out: list[tuple[int, float, bool]] = []
    taken: set[int] = set()
    for p in pinned or []:
        if allowed[p] and p not in taken and len(out) < k:
            out.append((p, float(masked[p]) if np.isfinite(masked[p]) else 0.0, True))
            taken.add(p)
    if len(out) >= k:
        return out
    n_cand = max(rules.candidates, 3 * k) if diverse else k + len(taken)
    cand, cand_scores = top_k(masked, n_cand)
    if len(cand) == 0:
        return out
    keep = np.array([c not in taken for c in cand], dtype=bool)
    cand, cand_scores = cand[keep], cand_scores[keep]
    if boosted:
        # boosting needs a pool beyond the plain top-k so a boosted item can climb into it
        pool, pool_scores = top_k(masked, max(rules.candidates, k))
        # a boosted item scored -inf (outside an ANN request's candidates) is not lifted: its -inf
        # would turn every scaled score into NaN and the list into item-index order
        extra = [b for b in boosted if allowed[b] and np.isfinite(masked[b]) and b not in taken and b not in set(pool.tolist())]
        cand = np.concatenate([pool, np.array(extra, np.int64)])
        cand_scores = np.concatenate([pool_scores, masked[extra] if extra else np.zeros(0)])
        keep = np.array([c not in taken for c in cand], dtype=bool)
        cand, cand_scores = cand[keep], cand_scores[keep]
        lo, hi = float(cand_scores.min()), float(cand_scores.max())
        scaled = (cand_scores - lo) / (hi - lo) if hi > lo else np.zeros(len(cand))
        scaled = scaled + rules.boost * np.isin(cand, np.array(boosted, np.int64))
        order = np.lexsort((cand, -scaled))
        cand, cand_scores = cand[order], scaled[order]
    need = k - len(out)
    if diverse:
        picked = diversify(cand, cand_scores, need, rules, catalogue, vectors)
    else:
        picked = list(range(min(need, len(cand))))
    out.extend((int(cand[i]), float(cand_scores[i]), False) for i in picked)
    return out


def diversify(
    cand: np.ndarray,
    scores: np.ndarray,
    k: int,
    rules: RulesConfig,
    catalogue: Catalogue,
    vectors: np.ndarray | None,
) -> list[int]:
    """Positions in `cand` chosen greedily: MMR over item vectors (if any) + max-per-category cap."""
    n = len(cand)
    if n == 0:
        return []
    lo, hi = float(scores.min()), float(scores.max())
    rel = (scores - lo) / (hi - lo) if hi > lo else np.ones(n)
    sim = None
    if vectors is not None:
        v = vectors[cand]
        sim = v @ v.T  # (n, n) cosine, vectors are L2-normalised
    per_cat: dict[str, int] = {}
    chosen: list[int] = []
    max_sim = np.zeros(n)
    available = np.ones(n, bool)
    lam = rules.mmr_lambda
    while len(chosen) < k and available.any():
        value = lam * rel - (1 - lam) * max_sim if sim is not None else rel.copy()
        value = np.where(available, value, -np.inf)
        i = int(np.argmax(value))
        available[i] = False
        cat = catalogue.categories[int(cand[i])]
        if cat and per_cat.get(cat, 0) >= rules.max_per_category:
            continue
        per_cat[cat] = per_cat.get(cat, 0) + 1
        chosen.append(i)
        if sim is not None:
            max_sim = np.maximum(max_sim, sim[i])
    return chosen
