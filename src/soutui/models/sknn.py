"""Session-based k-nearest neighbours (V-SKNN): the training sessions most like a history vote for their items.

Why this shape: in session data (anonymous visits, Diginetica) the best evidence for the next
click is often whole sessions that went the same way, not only item pairs (item-kNN) or a
learned state (SASRec). V-SKNN (Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", 2018) weights the history's items by position (linear decay: the j-th of n weighs
j / n, so the latest counts most), scores every training session by the weights of the history
items it holds, divided by the square root of its length (long sessions hold everything), keeps
the `neighbors` best, and scores an item by the summed similarity of the neighbours that hold it.

A session that holds nothing outside the history is skipped (`skip_subsets`): it can only vote
for items already seen. This also keeps validation honest without knowing whose history it is:
a held-out row's own training sequence (its history, less the held-out item) is such a session,
and so is a user's own sequence at serving time on per-user data (where this is user-kNN).

Scores are scaled so each history's best item scores 1, plus a vanishing popularity prior that
orders the items no neighbour holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.base import Recommender
from soutui.models.popularity import item_counts

BLOCK = 256  # histories scored at once (a (BLOCK, sessions) similarity block stays small)


def session_matrix(sequences: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(sessions, items) 0/1: which items each training sequence holds."""
    sets = [np.unique(np.asarray(s, np.int64)) for s in sequences]
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    cols = np.concatenate(sets) if sets else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sets), n_items))


def decay_weights(history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items, weights) of one history: the j-th of n items weighs j / n; a repeated item keeps its latest."""
    h = np.asarray(history, np.int64)
    w = np.arange(1, len(h) + 1, dtype=np.float32) / max(len(h), 1)
    items, last = np.unique(h[::-1], return_index=True)  # first occurrence from the end = the latest
    return items, w[::-1][last]


class SessionKNN(Recommender):
    """V-SKNN over the training sequences (see the module docstring)."""

    name = "sknn"

    def __init__(
        self, neighbors: int = 100, normalize: bool = True, max_history: int = 20, skip_subsets: bool = True
    ) -> None:
        if neighbors < 1 or max_history < 1:
            raise ValueError("neighbors and max_history must be >= 1")
        self.neighbors, self.normalize, self.max_history = int(neighbors), bool(normalize), int(max_history)
        self.skip_subsets = bool(skip_subsets)

    def params(self) -> dict[str, Any]:
        return {"neighbors": self.neighbors, "normalize": self.normalize, "max_history": self.max_history,
                "skip_subsets": self.skip_subsets}  # fmt: skip

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        self.n_items_ = train.n_items
        self.sessions_ = session_matrix([s for s in train.sequences if len(s)], train.n_items)
        counts = item_counts(train)
        self.prior_ = (1e-9 * counts / max(counts.max(initial=0), 1.0)).astype(np.float64)
        self._index()
        return self

    def _index(self) -> None:
        """The item -> sessions index and each session's length weight (derived, not saved)."""
        self.by_item_ = self.sessions_.T.tocsr()
        self.lengths_ = np.asarray(self.sessions_.sum(1), np.float32).ravel()
        self.session_w_ = (
            1 / np.sqrt(np.maximum(self.lengths_, 1)) if self.normalize else np.ones_like(self.lengths_)
        )

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        out = np.empty((len(histories), self.n_items_), np.float64)
        for b in range(0, len(histories), BLOCK):
            out[b : b + BLOCK] = self._score_block(histories[b : b + BLOCK])
        return out

    def _score_block(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        rows, cols, vals = [], [], []
        for r, h in enumerate(histories):
            items, w = decay_weights(np.asarray(h, np.int64)[-self.max_history :])
            rows.append(np.full(len(items), r))
            cols.append(items)
            vals.append(w)
        q = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))) if rows else ([], ([], [])),
            shape=(len(histories), self.n_items_),
        )
        sims = (q @ self.by_item_).tocsr()  # (B, sessions): summed weights of the history items each holds
        if self.skip_subsets:
            q.data[:] = 1.0
            held = (q @ self.by_item_).tocsr()  # how many history items each holds: same pattern as sims
            held.sort_indices()
            sims.sort_indices()
            sims.data[held.data >= self.lengths_[held.indices]] = 0.0
            sims.eliminate_zeros()
        sims.data *= self.session_w_[sims.indices]
        nb = self._keep_best(sims)
        scores = np.asarray((nb @ self.sessions_).todense(), np.float64)
        top = scores.max(1, keepdims=True)
        return scores / np.where(top > 0, top, 1.0) + self.prior_[None, :]

    def _keep_best(self, sims: sp.csr_matrix) -> sp.csr_matrix:
        """Each row's `neighbors` largest entries (ties by session index), the rest dropped."""
        keep = np.zeros(len(sims.data), bool)
        for r in range(sims.shape[0]):
            lo, hi = sims.indptr[r], sims.indptr[r + 1]
            if hi - lo <= self.neighbors:
                keep[lo:hi] = True
                continue
            order = np.lexsort((sims.indices[lo:hi], -sims.data[lo:hi]))[: self.neighbors]
            keep[lo + order] = True
        out = sims.copy()
        out.data = np.where(keep, out.data, 0.0).astype(out.data.dtype)
        out.eliminate_zeros()
        return out

    def _save_state(self, path: Path) -> None:
        sp.save_npz(path / "sessions.npz", self.sessions_.tocsr())
        np.save(path / "prior.npy", self.prior_)

    def _load_state(self, path: Path) -> None:
        self.sessions_ = sp.load_npz(path / "sessions.npz").tocsr().astype(np.float32)
        self.prior_ = np.load(path / "prior.npy")
        self.n_items_ = self.sessions_.shape[1]
        self._index()
