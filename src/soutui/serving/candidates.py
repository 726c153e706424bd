"""The rules layer on an ANN request's candidate set instead of the catalogue (issue 13 §4).

With an index (serving/ann.py) a request's exact scores exist only for ~1,000 candidates; the
rest of the catalogue scores -inf. Running the rules (stock and category filters, exclusions,
pins, boosts, diversity) on a catalogue-long vector then costs more than the model: a 1M-item
score vector filled with -inf, an allowed mask, a top-k scan. Here the same `rules.select` runs
on the candidate pool alone, renumbered, and its picks are mapped back: equal to the full path's
(tests/serving/test_ann_sparse.py), in O(candidates).
"""

from __future__ import annotations

import numpy as np

from soutui.serving import rules
from soutui.serving.ann import AnnRetriever
from soutui.serving.bundle import Catalogue
from soutui.serving.settings import RulesConfig


def select_candidates(
    retriever: AnnRetriever,
    history: np.ndarray,
    timestamps: np.ndarray | None,
    k: int,
    cfg: RulesConfig,
    catalogue: Catalogue,
    vectors: np.ndarray | None = None,
    *,
    category: str | None = None,
    exclude: np.ndarray | None = None,
    pinned: list[int] | None = None,
    boosted: list[int] | None = None,
    diverse: bool = False,
) -> list[tuple[int, float, bool]] | None:
    """`rules.select` over the candidates (plus pinned and boosted items, scored -inf unless
    retrieved) instead of the catalogue: the same picks as `rules.select(retriever.scores(...),
    rules.allowed_mask(...), ...)`, in O(candidates). The pool is in ascending item order, so
    top_k's ties (to the lower index) fall as over the catalogue. None when the filters leave
    fewer than k candidates allowed: the caller scores the catalogue in full."""
    items, cand = retriever.candidate_scores(history, timestamps)
    pins, boosts = list(pinned or []), list(boosted or [])
    pool = np.union1d(items, np.asarray(pins + boosts, np.int64))
    scores = np.full(len(pool), -np.inf, np.float32)
    scores[np.searchsorted(pool, items)] = cand
    allowed = allowed_at(catalogue, cfg, pool, category, exclude)
    if np.count_nonzero(allowed & np.isfinite(scores)) < k:
        return None
    at = lambda ids: np.searchsorted(pool, np.asarray(ids, np.int64)).tolist()  # noqa: E731 - item -> pool position
    # only diversity reads the catalogue's rows and the vectors (renumbered: 0.3 ms for 1,000 items,
    # so only then); the equality test in test_ann_sparse.py would catch a change to that
    picked = rules.select(
        scores, allowed, k, cfg, catalogue_at(catalogue, pool) if diverse else catalogue,
        vectors[pool] if diverse and vectors is not None else None,
        pinned=at(pins), boosted=at(boosts), diverse=diverse,
    )
    return [(int(pool[i]), score, pin) for i, score, pin in picked]


def allowed_at(
    catalogue: Catalogue, cfg: RulesConfig, pool: np.ndarray, category: str | None = None, exclude: np.ndarray | None = None
) -> np.ndarray:
    """`rules.allowed_mask(...)[pool]` without the catalogue-long mask (a category's mask is cached)."""
    mask = catalogue.in_stock[pool] if cfg.in_stock_only else np.ones(len(pool), bool)
    if category:
        mask &= catalogue.category_mask(category)[pool]
    if exclude is not None and len(exclude):
        mask &= ~np.isin(pool, exclude)
    return mask


def catalogue_at(catalogue: Catalogue, pool: np.ndarray) -> Catalogue:
    """The catalogue's rows `pool`, renumbered 0..len(pool)-1 (what `rules.select` reads of them)."""
    rows = pool.tolist()
    return Catalogue(
        catalogue.item_ids[pool], [catalogue.titles[i] for i in rows], [catalogue.categories[i] for i in rows],
        [catalogue.brands[i] for i in rows], catalogue.prices[pool], catalogue.in_stock[pool],
    )
