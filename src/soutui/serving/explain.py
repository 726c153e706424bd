"""Short human-readable reasons attached to every result ("because you viewed X").

Reasons must be true: "because you viewed X" names the history item closest to the
recommendation in the model's own item-vector space; without vectors the reason says
only what is known ("based on your recent activity").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from soutui.serving.bundle import Catalogue

VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "search": "searched"}


def short(title: str, n: int = 48) -> str:
    return title if len(title) <= n else title[: n - 1].rstrip() + "…"


PairSim = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (items, history) -> (k, h) affinity


def pair_similarity(model: Any, vectors: np.ndarray | None) -> PairSim | None:
    """How strongly each history item points at each result, in the model's own terms:
    cosine of item vectors, or an item-item similarity matrix (`sim_`, e.g. ItemKNN)."""
    if vectors is not None:
        return lambda items, hist: vectors[items] @ vectors[hist].T
    sim = getattr(model, "sim_", None)
    if sim is not None and hasattr(sim, "tocsr"):
        return lambda items, hist: np.asarray(sim[hist][:, items].toarray()).T
    return None


def because(
    items: list[int],
    history: np.ndarray,
    history_types: list[str],
    catalogue: Catalogue,
    affinity: PairSim | None,
    lookback: int = 20,
) -> list[str]:
    """For each recommended item, name the recent history item that most explains it."""
    if len(history) == 0:
        return ["trending this week"] * len(items)
    if affinity is None or not items:
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
            out.append(f"because you {VERBS.get(types[b], 'viewed')} {short(catalogue.titles[int(hist[b])])}")
    return out


def trending_reason(category: str | None) -> str:
    return f"popular in {category}" if category else "trending this week"


def similar_reason(catalogue: Catalogue, item: int) -> str:
    return f"similar to {short(catalogue.titles[item])}"


def search_reason(query: str, given: str | None) -> str:
    return given or f"matches '{short(query, 40)}'"


PINNED_REASON = "featured by the shop"
