"""The one small contract every recommender implements.

In the spirit of implicit / scikit-learn: `__init__` stores parameters, `fit`
learns (state ends in `_`) and returns self. Models score a *history* (a sequence
of item indices), not a user id, so the same call serves offline evaluation, new
users and real-time updates after fresh events.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from soutui.data.sequences import EvalSplit, SequenceData


class Recommender(ABC):
    """Base class: subclasses implement `fit`, `score`, `_save_state`, `_load_state`."""

    name: ClassVar[str] = "base"

    n_items_: int

    @abstractmethod
    def fit(self, train: SequenceData, valid: EvalSplit | None = None) -> Self:
        """Learn from training sequences; `valid` may be used for early stopping only."""

    @abstractmethod
    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """Scores over all items, shape (len(histories), n_items); higher is better."""

    def params(self) -> dict[str, Any]:
        """Constructor parameters, saved with the model so it can rebuild itself."""
        return {}

    def recommend(
        self, history: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item indices, scores) for one history; `exclude` items are never returned."""
        scores = self.score([np.asarray(history, dtype=np.int64)])[0].astype(np.float64)
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        return top_k(scores, k)

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings (I, D) if the model has them; used for similar items and ANN."""
        return None

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to `item` (never `item` itself).

        Default: cosine over item_vectors() if the model has them, else the items
        this model recommends after a history of just `item`.
        """
        vecs = self.item_vectors()
        if vecs is not None:
            v = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
            scores = (v @ v[item]).astype(np.float64)
        else:
            scores = self.score([np.array([item], dtype=np.int64)])[0].astype(np.float64)
        scores[item] = -np.inf
        return top_k(scores, k)

    # --- persistence -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a self-describing directory: model.json (class, params) + state files."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "params": self.params(), "n_items": self.n_items_}
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        self._save_state(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        if meta["model"] != cls.name:
            raise ValueError(f"{path} holds a {meta['model']!r} model, not {cls.name!r}")
        model = cls(**meta["params"])
        model.n_items_ = int(meta["n_items"])
        model._load_state(path)
        return model

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest finite scores, best first."""
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    part = np.argpartition(-np.where(finite, scores, -np.inf), k - 1)[:k]
    order = part[np.lexsort((part, -scores[part]))]
    return order.astype(np.int64), scores[order]
