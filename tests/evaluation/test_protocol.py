"""The full-ranking protocol: pessimistic ties, history exclusion, the target never excluded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pytest

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.evaluation.protocol import RankingProtocol, evaluate_full_ranking, target_ranks
from soutui.features.content import ItemContent
from soutui.models.base import Recommender

N = 50


class Fixed(Recommender):
    """Scores given by a fixed vector, whatever the history."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, np.float64)
        self.n_items_ = len(scores)

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        return self

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        self.seen_times = timestamps
        return np.tile(self.scores, (len(histories), 1))

    def _save_state(self, path: Path) -> None: ...

    def _load_state(self, path: Path) -> None: ...


def _split(histories: list[list[int]], targets: list[int]) -> EvalSplit:
    return EvalSplit(
        np.arange(len(targets)), [np.array(h, np.int64) for h in histories], np.array(targets, np.int64)
    )


def test_constant_scorer_gets_the_worst_rank() -> None:
    split = _split([[1, 2], [3]], [5, 7])
    ranks, _ = target_ranks(Fixed(np.zeros(N)), split)
    assert ranks.tolist() == [N - 1, N - 1]
    out = evaluate_full_ranking(Fixed(np.zeros(N)), split, N, ks=(10,))
    assert out["HR@10"] == 0.0 and out["NDCG@10"] == 0.0


def test_ranks_count_strictly_better_items_and_ties() -> None:
    scores = np.arange(N, dtype=np.float64)  # item N-1 is best
    split = _split([[0], [0], [0]], [N - 1, N - 3, 0])
    ranks, _ = target_ranks(Fixed(scores), split)
    assert ranks.tolist() == [0, 2, N - 1]
    tied = scores.copy()
    tied[N - 2] = tied[N - 1]  # the target ties with one other item -> counted as below it
    ranks, _ = target_ranks(Fixed(tied), _split([[0]], [N - 1]))
    assert ranks.tolist() == [1]


def test_exclude_history_removes_history_but_never_the_target() -> None:
    scores = np.arange(N, dtype=np.float64)
    # history holds the two best items and the target itself (a repeat purchase)
    split = _split([[N - 1, N - 2, N - 4]], [N - 4])
    kept, _ = target_ranks(Fixed(scores), split, exclude_history=False)
    excluded, tops = target_ranks(Fixed(scores), split, exclude_history=True, topk=3)
    assert kept.tolist() == [3]
    assert excluded.tolist() == [1]  # only N-3 is still above it; the target was not removed
    assert tops is not None and not ({N - 1, N - 2} & set(tops[0].tolist()))


def test_metrics_report_and_protocol_description() -> None:
    scores = np.arange(N, dtype=np.float64)
    split = _split([[0]] * 4, [N - 1, N - 2, N - 11, 0])  # ranks 0, 1, 10, 49
    out = evaluate_full_ranking(Fixed(scores), split, N, ks=(1, 10, 20))
    assert out["HR@1"] == 0.25 and out["HR@10"] == 0.5 and out["HR@20"] == 0.75
    assert out["MRR@10"] == pytest.approx((1 + 0.5) / 4)
    assert out["NDCG@10"] == pytest.approx((1 + 1 / np.log2(3)) / 4, abs=1e-6)  # reports round to 6 places
    assert out["users"] == 4 and out["Coverage@20"] == pytest.approx(20 / N)
    text = RankingProtocol(exclude_history=True).describe()
    assert "full ranking" in text and "EXCLUDED" in text and "pessimistic" in text


def test_event_times_reach_the_model() -> None:
    """The protocol hands every model the split's timestamps, aligned with the histories."""
    split = EvalSplit(
        np.arange(2), [np.array([1, 2], np.int64), np.array([3], np.int64)], np.array([4, 5], np.int64),
        "t", [np.array([10, 20], np.int64), np.array([30], np.int64)],
    )  # fmt: skip
    model = Fixed(np.zeros(N))
    target_ranks(model, split)
    assert model.seen_times is not None and [list(t) for t in model.seen_times] == [[10, 20], [30]]
