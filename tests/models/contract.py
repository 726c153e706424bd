"""The contract every recommender must pass, on synthetic data with a known answer.

Adding a model is one line in CASES: a name, a factory for an unfitted model, the
extra keyword arguments its `fit` needs (if any), and what it is expected to get right.

The data: users walk a cycle 0 -> 1 -> ... -> N-1 -> 0 from random starting points,
plus "hot" users who only visited HOT_ITEM. So the true next item of any
history is (last + 1) % N, and HOT_ITEM is strictly the most frequent item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.sequences import SequenceData
from soutui.models.base import Recommender
from soutui.models.itemknn import ItemKNN
from soutui.models.popularity import Popularity, RecentPopularity

N_ITEMS = 24
HOT_ITEM = 7


def cyclic_data(n_users: int = 120, n_items: int = N_ITEMS, seed: int = 0) -> SequenceData:
    """Cyclic walks (the known next-item answer) + hot-item walks (the known popular item)."""
    rng = np.random.default_rng(seed)
    seqs, tss = [], []
    for _ in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(6, 14))
        seqs.append((start + np.arange(length)) % n_items)
    for _ in range(40):  # one-item visits: HOT_ITEM becomes the most frequent, transitions unchanged
        seqs.append(np.array([HOT_ITEM]))
    for s in seqs:
        tss.append(1_700_000_000 + 86400 * np.arange(len(s), dtype=np.int64))
    item_ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    user_ids = np.array([f"u{u}" for u in range(len(seqs))], dtype=object)
    return SequenceData(item_ids, user_ids, [s.astype(np.int64) for s in seqs], tss)


def synthetic_items(data: SequenceData, seed: int = 0) -> pd.DataFrame:
    """An items table (schema `items`) aligned to `data.item_ids`, for feature-based models."""
    rng = np.random.default_rng(seed)
    n = data.n_items
    return pd.DataFrame(
        {
            "item_id": [str(x) for x in data.item_ids],
            "title": [f"product number {i} in group {i % 4}" for i in range(n)],
            "category": [f"Beauty > Group {i % 4}" for i in range(n)],
            "brand": [f"brand{i % 3}" for i in range(n)],
            "price": rng.uniform(1, 50, n).round(2),
            "attributes": [f'{{"size": "{i % 2}"}}' for i in range(n)],
        }
    )


def synthetic_text_embeddings(data: SequenceData, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Stand-in title embeddings (L2-normalised), so tests need no text encoder."""
    x = np.random.default_rng(seed).normal(size=(data.n_items, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@dataclass
class Case:
    """One model under contract and what it must get right on `cyclic_data`."""

    name: str  # registry name (save/load goes through soutui.models.registry)
    factory: Callable[[], Recommender]
    fit_kwargs: Callable[[SequenceData], dict[str, Any]] = field(default=lambda data: {})
    next_item_top1: bool = False  # true next item ranked first for every history
    most_popular_top1: bool = False  # recommends HOT_ITEM first whatever the history
    min_next_item_hr10: float = 0.0  # weaker sequential expectation (share of histories)


def _mlp_factory() -> Recommender:
    from soutui.models.mlp import MLPRecommender

    return MLPRecommender(epochs=20, batch_size=32, dim=32, hidden=64, use_text=False, seed=0)


def _mlp_fit_kwargs(data: SequenceData) -> dict[str, Any]:
    return {"items": synthetic_items(data), "text_embeddings": synthetic_text_embeddings(data)}


def _sasrec_factory() -> Recommender:
    from soutui.models.sasrec_recommender import SASRecRecommender

    return SASRecRecommender(d_model=16, n_layers=1, max_len=12, dropout=0.1, emb_dropout=0.1, epochs=15,
                             batch_size=32, lr=0.01, progress=False)  # fmt: skip


# One line per model. The sequential-model helper adds sasrec here.
CASES: list[Case] = [
    Case("popularity", Popularity, most_popular_top1=True),
    Case("recent-popularity", lambda: RecentPopularity(half_life_days=365.0), most_popular_top1=True),
    Case("itemknn", ItemKNN, next_item_top1=True),
    Case("mlp", _mlp_factory, _mlp_fit_kwargs, min_next_item_hr10=0.9),
    Case("sasrec", _sasrec_factory, min_next_item_hr10=0.9),
]


def fit_case(case: Case, data: SequenceData) -> Recommender:
    return case.factory().fit(data, **case.fit_kwargs(data))


def probe_histories(data: SequenceData) -> list[np.ndarray]:
    """Histories whose true next item is known: every cyclic prefix ending at each item."""
    n = data.n_items
    return [
        ((end - np.arange(length)[::-1]) % n).astype(np.int64) for end in range(n) for length in (1, 3, 5)
    ]
