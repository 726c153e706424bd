"""Short human-readable reasons attached to every result ("because you viewed X").

Reasons must be true: "because you viewed X" names the history item that most raises the
recommendation in the model's own terms (its item vectors, or its scores; see
`pair_similarity`); when no history item does, the reason says only what is known
("based on your recent activity").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from soutui.models.base import Recommender
from soutui.serving.bundle import Catalogue

VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "search": "searched"}


def short(title: str, n: int = 48) -> str:
    return title if len(title) <= n else title[: n - 1].rstrip() + "…"


PairSim = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (items, history) -> (k, h) affinity


def pair_similarity(model: Recommender, vectors: np.ndarray | None) -> PairSim:
    """How strongly each history item points at each result, in the model's own terms:
    cosine of the served item vectors when given, else the model's `item_affinity` (for
    ItemKNN its item-item similarity; 0 for a model that ignores history, e.g. popularity,
    so no history item is named as the reason)."""
    if vectors is not None:
        return lambda items, hist: vectors[items] @ vectors[hist].T
    return model.item_affinity


def because(
    items: list[int],
    history: np.ndarray,
    history_types: list[str],
    catalogue: Catalogue,
    affinity: PairSim,
    lookback: int = 20,
) -> list[str]:
    """For each recommended item, name the recent history item that most explains it."""
    if len(history) == 0:
        return ["trending this week"] * len(items)
    if not items:
        return ["based on your recent activity"] * len(items)
    hist = history[-lookback:]
    types = history_types[-lookback:]
    sims = affinity(np.asarray(items, np.int64), hist)  # (k, h)
    # ties (e.g. all zero) go to the most recent history item
    best = len(hist) - 1 - sims[:, ::-1].argmax(axis=1)
    out = []
    for row, b in enumerate(best):
        if sims[row, b] <= 0:
            out.append("based on your recent activity")
        else:
            out.append(f"because you {VERBS.get(types[b], 'viewed')} {short(catalogue.label(int(hist[b])))}")
    return out


def trending_reason(category: str | None) -> str:
    return f"popular in {category}" if category else "trending this week"


def similar_reason(catalogue: Catalogue, item: int) -> str:
    return f"similar to {short(catalogue.label(item))}"


def search_reason(query: str, given: str | None) -> str:
    return given or f"matches '{short(query, 40)}'"


PINNED_REASON = "featured by the shop"
