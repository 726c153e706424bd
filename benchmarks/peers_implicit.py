"""`implicit`'s ALS behind the soutui contract, with the BM25 / TF-IDF weighting its users apply.

Shared by the benchmarks that run implicit as a peer (`peer_als_tuned.py`; `beauty_sasrec.py`
keeps its own untuned copy). A history is folded in as a new user with implicit's own
`recalculate_user`, so validation and test users are scored from the history the protocol gives
them (the validation item is part of a test user's history), as every other row does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.base import Recommender

WEIGHTINGS = ("none", "bm25", "tfidf")


def binary_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(users, items) float32 matrix with 1 where the user interacted with the item (repeats count once)."""
    rows = np.concatenate([np.full(len(h), u) for u, h in enumerate(histories)] or [np.zeros(0, int)])
    cols = np.concatenate([np.asarray(h) for h in histories] or [np.zeros(0, int)])
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), n_items), dtype=np.float32
    )
    m.data[:] = 1.0
    return m


class ItemUserWeighting:
    """implicit.nearest_neighbours' `bm25_weight` / `tfidf_weight`, fitted on training, applied to anyone.

    implicit's examples weight the item x user matrix (`bm25_weight(item_users).T`): an item is
    a document and a user a term, so idf is per user (log n_items - log1p(items the user has)) and
    the length norm per item (its training count over the mean). Both can be computed for a user
    folded in at test time, so the training matrix and every scored history get the same weights;
    on the training matrix the result equals implicit's (tests/evaluation/test_peer_als_tuned.py).
    """

    def __init__(self, kind: str = "none", K1: float = 100.0, B: float = 0.8):  # noqa: N803 (implicit's names)
        if kind not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {kind!r}")
        self.kind, self.K1, self.B = kind, K1, B

    def fit(self, ui: sp.csr_matrix) -> ItemUserWeighting:
        counts = np.asarray(ui.sum(axis=0)).ravel()  # each item's training count (its "document length")
        self.length_norm_ = (1.0 - self.B) + self.B * counts / counts.mean()
        self.n_items_ = ui.shape[1]
        return self

    def transform(self, ui: sp.csr_matrix) -> sp.csr_matrix:
        if self.kind == "none":
            return ui
        coo = ui.tocoo()
        per_user = np.bincount(coo.row, minlength=ui.shape[0])
        idf = np.log(float(self.n_items_)) - np.log1p(per_user)
        if self.kind == "tfidf":
            data = np.sqrt(coo.data) * idf[coo.row]
        else:
            k1 = self.K1
            data = coo.data * (k1 + 1.0) / (k1 * self.length_norm_[coo.col] + coo.data) * idf[coo.row]
        return sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=ui.shape)


class ImplicitALS(Recommender):
    """implicit's `AlternatingLeastSquares` (implicit >= 0.5: confidence = alpha x the matrix entry)."""

    name = "implicit-als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 10.0,
        weighting: str = "none",
        K1: float = 100.0,  # noqa: N803 (implicit's names)
        B: float = 0.8,  # noqa: N803
        seed: int = 0,
        threads: int = 1,
    ):
        self.kw = {
            "factors": factors,
            "regularization": regularization,
            "iterations": iterations,
            "alpha": alpha,
        }
        self.weighting = ItemUserWeighting(weighting, K1, B)
        self.seed, self.threads = seed, threads

    def params(self) -> dict[str, Any]:
        w = self.weighting
        return {**self.kw, "weighting": w.kind, "K1": w.K1, "B": w.B, "seed": self.seed}

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> ImplicitALS:
        from implicit.cpu.als import AlternatingLeastSquares

        ui = binary_matrix(train.sequences, train.n_items)
        self.model_ = AlternatingLeastSquares(**self.kw, random_state=self.seed, num_threads=self.threads)
        self.model_.fit(self.weighting.fit(ui).transform(ui), show_progress=False)
        self.n_items_ = train.n_items
        return self

    def score(self, histories: Sequence[np.ndarray], timestamps: Any = None) -> np.ndarray:
        ui = self.weighting.transform(binary_matrix(histories, self.n_items_))
        users = self.model_.recalculate_user(np.arange(len(histories)), ui)
        return np.asarray(users @ self.model_.item_factors.T)

    def _save_state(self, path: Path) -> None:  # benchmark only
        raise NotImplementedError

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError
