"""benchmarks/explain_faithfulness.py: the score-margin race resolves rank ties, and a tie is never a win."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soutui.models.base import Recommender

spec = importlib.util.spec_from_file_location(
    "explain_faithfulness", Path(__file__).parents[2] / "benchmarks" / "explain_faithfulness.py"
)
assert spec is not None and spec.loader is not None
bench: Any = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

N = 8  # items 0..3 may be history, 4..7 candidates


class Additive(Recommender):
    """score(history)[j] = sum of W[h, j] over the history: occlusion recovers each item's part exactly."""

    name = "additive"

    def __init__(self, w: np.ndarray) -> None:
        self.w, self.n_items_ = w, w.shape[1]

    def score(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        return np.stack([self.w[np.asarray(h, np.int64)].sum(0) for h in histories])

    def fit(self, train: Any, valid: Any = None, *, content: Any = None) -> Additive:
        return self

    def _save_state(self, path: Path) -> None:
        raise NotImplementedError

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError


def test_rank_tie_is_half_and_the_margin_decides() -> None:
    w = np.zeros((N, N))
    w[0, 4] = 5.0  # item 0 supports the explained item (4) most; 1..3 a little each
    w[1:4, 4] = 1.0
    w[0:4, 5] = 0.5  # the runner-up, far behind: no single removal changes the top-1
    row = bench.one_user(Additive(w), np.array([0, 1, 2, 3]), None, np.random.default_rng(0), "occlusion")
    assert row["fall_top"] == row["fall_random"] == 0 and row["tie"] == 1.0 and row["win"] == 0.5
    assert row["score_win"] == 1.0 and row["score_tie"] == 0.0  # removing item 0 cuts the margin by 4.5, not 0.5


def test_a_score_tie_is_not_a_win() -> None:
    w = np.zeros((N, N))
    w[:, 4] = 1.0  # every history item adds the same to the explained item and to its rival
    w[:, 5] = 1.0 - 1e-3
    row = bench.one_user(Additive(w), np.array([0, 1, 2, 3]), None, np.random.default_rng(0), "occlusion")
    assert row["score_tie"] == 1.0 and row["score_win"] == 0.0


def test_oracle_is_the_ceiling_of_the_rank_race() -> None:
    # no single removal moves the top-1 -> even a perfect attribution only ties: ceiling 1/2
    assert bench.oracle_win(np.array([0, 0, 0, 0])) == 0.5
    # one removal drops it 3 places, the others 1, 1, 0: naming it wins every race
    assert bench.oracle_win(np.array([1, 3, 1, 0])) == 1.0
    # two removals share the largest fall: naming either ties the other (1/3 of the draws)
    assert bench.oracle_win(np.array([2, 2, 0, 0])) == (0.5 + 1 + 1) / 3
    w = np.zeros((N, N))
    w[0, 4] = 5.0
    w[1:4, 4] = 1.0
    w[0:4, 5] = 0.5
    row = bench.one_user(Additive(w), np.array([0, 1, 2, 3]), None, np.random.default_rng(0), "occlusion")
    assert row["oracle_win"] == 0.5 and row["win"] <= row["oracle_win"]
