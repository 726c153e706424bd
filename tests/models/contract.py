"""The contract every recommender must pass, on synthetic data with a known answer.

Adding a model is one line in CASES: a name, a factory for an unfitted model, and what
it is expected to get right. Every model is fitted the same way: handed the training
layer's LoopTrainer and the same synthetic ItemContent (models may ignore either). The
served ONNX form of SASRec runs the same checks (fitted = trained in PyTorch, exported,
loaded as OnnxScorer).

The data: users walk a cycle 0 -> 1 -> ... -> N-1 -> 0 from random starting points,
plus "hot" users who only visited HOT_ITEM. So the true next item of any
history is (last + 1) % N, and HOT_ITEM is strictly the most frequent item.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data.sequences import SequenceData
from soutui.features.content import ItemContent
from soutui.models.base import Recommender
from soutui.models.itemknn import ItemKNN
from soutui.models.popularity import Popularity, RecentPopularity
from soutui.models.sknn import SessionKNN
from soutui.training.trainer import LoopTrainer

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


def synthetic_content(data: SequenceData) -> ItemContent:
    """The content every model is fitted with: items table fields + stand-in title embeddings."""
    return ItemContent.from_items(synthetic_items(data), data.item_ids, text=synthetic_text_embeddings(data))


@dataclass
class Case:
    """One model under contract and what it must get right on `cyclic_data`."""

    name: str  # registry name (save/load goes through soutui.models.registry)
    factory: Callable[[], Recommender]
    served_from: Callable[[Recommender, Path], Recommender] | None = None  # load-only served form
    next_item_top1: bool = False  # true next item ranked first for every history
    most_popular_top1: bool = False  # recommends HOT_ITEM first whatever the history
    min_next_item_hr10: float = 0.0  # weaker sequential expectation (share of histories)


def _mlp_factory() -> Recommender:
    from soutui.models.mlp import MLPRecommender

    return MLPRecommender(epochs=20, batch_size=32, dim=32, hidden=64, use_text=False, seed=0)


def _sasrec_factory() -> Recommender:
    from soutui.models.sasrec_recommender import SASRecRecommender

    return SASRecRecommender(d_model=16, n_layers=1, max_len=12, dropout=0.1, emb_dropout=0.1, epochs=15,
                             batch_size=32, lr=0.01, progress=False)  # fmt: skip


def _onnx_from(model: Recommender, path: Path) -> Recommender:
    from soutui.models.sasrec_onnx import OnnxScorer

    model.save(path)
    model.export_served(path)
    return OnnxScorer(path)


# One line per model.
CASES: list[Case] = [
    Case("popularity", Popularity, most_popular_top1=True),
    Case("recent-popularity", lambda: RecentPopularity(half_life_days=365.0), most_popular_top1=True),
    Case("itemknn", ItemKNN, next_item_top1=True),
    Case("sknn", SessionKNN, min_next_item_hr10=0.9),
    Case("mlp", _mlp_factory, min_next_item_hr10=0.9),
    Case("sasrec", _sasrec_factory, min_next_item_hr10=0.9),
    Case("sasrec-onnx", _sasrec_factory, served_from=_onnx_from, min_next_item_hr10=0.9),
]


def fit_case(case: Case, data: SequenceData) -> Recommender:
    """Fit as every caller does: a trainer injected, the same content offered to every model."""
    model = case.factory().use_trainer(LoopTrainer(progress=False)).fit(data, content=synthetic_content(data))
    if case.served_from is None:
        return model
    return case.served_from(model, Path(tempfile.mkdtemp(prefix=f"{case.name}-")))


def probe_histories(data: SequenceData) -> list[np.ndarray]:
    """Histories whose true next item is known: every cyclic prefix ending at each item."""
    n = data.n_items
    return [
        ((end - np.arange(length)[::-1]) % n).astype(np.int64) for end in range(n) for length in (1, 3, 5)
    ]
