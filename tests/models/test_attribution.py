"""Attributions against models whose true contributions are known by construction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pytest
import torch

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.attribution import (
    Attribution,
    content_lift,
    history_weights,
    lime_masks,
    strongest,
    zeroed,
)
from soutui.models.base import Recommender
from soutui.models.itemknn import ItemKNN

N = 12


class Additive(Recommender):
    """score(h)[i] = bias[i] + sum over history positions j of W[h_j, i]: position j adds exactly
    W[h_j, i], so occlusion must return W[h_j, i] and a linear surrogate must find it."""

    name = "additive"

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_items_ = N
        self.w = rng.normal(size=(N, N))
        self.bias = rng.normal(size=N)

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        return self

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        return np.stack([self.bias + self.w[np.asarray(h, np.int64)].sum(0) for h in histories])

    def _save_state(self, path: Path) -> None: ...

    def _load_state(self, path: Path) -> None: ...


class TwoPart(Additive):
    """An additive model whose item vectors are ID part + content part (torch tensors), so the
    content lift of zeroing the content part is known: score = sum_j <v(h_j), v(i)> with
    v = id + text; zeroing text leaves sum_j <id(h_j), id(i)>."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.id_part = torch.randn(N, 4, generator=g, dtype=torch.float64)
        self.text_part = torch.randn(N, 4, generator=g, dtype=torch.float64)

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        v = (self.id_part + self.text_part).numpy()
        return np.stack([v[np.asarray(h, np.int64)].sum(0) @ v.T for h in histories])


HISTORY = np.array([3, 7, 1, 9, 7])
ITEMS = np.array([0, 5, 11])


def test_occlusion_recovers_each_positions_true_contribution() -> None:
    m = Additive()
    got = history_weights(m, HISTORY, ITEMS)  # (k, h)
    np.testing.assert_allclose(got, m.w[HISTORY][:, ITEMS].T, atol=1e-12)


def test_counterfactual_is_the_lead_each_removal_takes_away() -> None:
    """Item 0 is explained. Position 0 (item 1) adds 5 to EVERY score, position 1 (item 2) adds 3 to
    item 0 only: occlusion ranks position 0 first (5 > 3), yet only removing position 1 lets another
    item catch up. The counterfactual weights are the exact lead drops, [0, 3], so it names position 1."""
    m = Additive()
    m.bias[:] = 0.0
    m.w[:] = 0.0
    m.w[1, :] = 5.0
    m.w[2, 0] = 3.0
    hist, items = np.array([1, 2]), np.array([0])
    np.testing.assert_allclose(history_weights(m, hist, items), [[5.0, 3.0]])
    np.testing.assert_allclose(history_weights(m, hist, items, method="counterfactual"), [[0.0, 3.0]])
    # the competitor is re-chosen after each removal, and never an explained or history item
    m.w[1, 4] = 7.0  # item 4 now scores 7 with item 1 in the history: item 0's lead is 8 - 7 = 1
    m.w[1, 5] = 9.0  # item 5 scores 9, but it is explained too, so it is nobody's competitor
    got = history_weights(m, hist, np.array([0, 5]), method="counterfactual")
    # without position 0 item 0 leads 3 - 0 (the removal RAISES its lead by 2); without position 1 it
    # trails 5 - 7; item 5 leads 9 - 7 = 2, 0 - 0 without position 0, 9 - 7 without position 1
    np.testing.assert_allclose(got, [[-2.0, 3.0], [2.0, 0.0]])


def test_lime_surrogate_recovers_the_additive_weights() -> None:
    m = Additive()
    got = history_weights(m, HISTORY, ITEMS, method="lime")
    truth = m.w[HISTORY][:, ITEMS].T
    # a linear surrogate of a linear function: only LIME's ridge penalty (alpha=1) shrinks it
    np.testing.assert_allclose(got, truth, rtol=0.1, atol=0.02)
    assert np.corrcoef(got.ravel(), truth.ravel())[0, 1] > 0.99


def test_lime_masks_are_seeded_and_start_from_the_full_history() -> None:
    a, b = lime_masks(6, 50, seed=3), lime_masks(6, 50, seed=3)
    assert (a == b).all() and a[0].all() and 0.3 < a[1:].mean() < 0.7


def test_hook_lists_every_position_strongest_first() -> None:
    m = Additive()
    rows = m.attribute(HISTORY, ITEMS)
    assert len(rows) == len(ITEMS)
    for k, row in enumerate(rows):
        assert sorted(a.position for a in row if a.position is not None) == list(range(len(HISTORY)))
        weights = [abs(a.weight) for a in row]
        assert weights == sorted(weights, reverse=True)
        top = row[0]
        assert top.item == HISTORY[top.position] and top.kind == "history_item"
        assert top.weight == pytest.approx(m.w[HISTORY[top.position], ITEMS[k]])
    with pytest.raises(ValueError, match="unknown attribution method"):
        m.attribute(HISTORY, ITEMS, method="shap")


def test_content_lift_is_the_score_the_content_part_adds() -> None:
    m = TwoPart()
    rows = content_lift(m, HISTORY, ITEMS, None, {"title vectors": lambda: zeroed([m.text_part])})
    v = (m.id_part + m.text_part).numpy()
    ids = m.id_part.numpy()
    full = v[HISTORY].sum(0) @ v[ITEMS].T
    no_text = ids[HISTORY].sum(0) @ ids[ITEMS].T
    for k in range(len(ITEMS)):
        assert rows[k][0].kind == "content" and rows[k][0].name == "title vectors"
        assert rows[k][0].weight == pytest.approx(full[k] - no_text[k])
    assert torch.equal(m.text_part, TwoPart().text_part)  # restored exactly


def test_itemknn_neighbour_evidence_sums_to_its_score() -> None:
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, N, rng.integers(4, 9)) for _ in range(80)]
    data = SequenceData(
        np.array([f"i{i}" for i in range(N)], object), np.array([f"u{u}" for u in range(80)], object), seqs
    )
    knn = ItemKNN(max_history=4).fit(data)
    history = np.array([2, 5, 5, 8, 1, 3])  # longer than max_history: the two oldest add nothing
    items = np.arange(N)
    rows = knn.attribute(history, items)
    scores = knn.score([history])[0] - knn.prior_
    for i, row in enumerate(rows):
        assert sum(a.weight for a in row) == pytest.approx(scores[i], abs=1e-12)
        assert all(a.weight == 0 for a in row if a.position is not None and a.position < 2)
    # neighbour evidence is the model's own term, sim[h, i] x recency weight
    top = strongest(rows[int(np.argmax(scores))])
    assert isinstance(top, Attribution) and top.position is not None
    weight = 0.5 ** ((len(history) - 1 - top.position) / knn.history_half_life)
    assert top.weight == pytest.approx(knn.sim_[top.item, int(np.argmax(scores))] * weight)


def test_strongest_ignores_negative_and_other_kinds() -> None:
    attrs = [
        Attribution("history_item", "a", -3.0),
        Attribution("content", "t", 2.0),
        Attribution("history_item", "b", 0.5),
    ]
    assert strongest(attrs, "history_item") == attrs[2]
    assert strongest(attrs) == attrs[1]
    assert strongest([Attribution("history_item", "a", -1.0)]) is None


def test_sequence_models_name_the_last_item_and_split_off_content() -> None:
    """On the cyclic toy (next item = last + 1) a trained SASRec and MLP must rest their top-1 on
    the last history item; their content side names every part the network is fed."""
    from sasrec_fixtures import SMALL, cyclic_data, sasrec

    from soutui.models.mlp import MLPRecommender
    from soutui.training.trainer import LoopTrainer

    split = cyclic_data()
    rng = np.random.default_rng(0)
    content = ItemContent(
        text=rng.normal(size=(24, 8)).astype(np.float32), attributes=[[i % 3] for i in range(24)]
    )
    models = [
        sasrec(**SMALL, epochs=12, patience=20).fit(split.train, split.valid, content=content),
        MLPRecommender(epochs=15, patience=0, batch_size=64, lr=0.01)
        .use_trainer(LoopTrainer(progress=False))
        .fit(split.train, content=content),
    ]
    for m in models:
        hits = 0
        for h in split.test.histories[:20]:
            h = np.asarray(h, np.int64)
            item = int(np.argmax(m.score([h])[0]))
            (row,) = m.attribute(h, np.array([item]))
            top = strongest(row, "history_item")
            hits += top is not None and top.position == len(h) - 1
            parts = {a.name for a in row if a.kind == "content"}
            assert {"ID embedding", "title vectors", "attribute vectors"} <= parts, (m.name, parts)
            # occlusion: each weight is the score lost without that one position, recomputed here
            for a in row[:2]:
                if a.kind == "history_item" and a.position is not None:
                    rest = np.delete(h, a.position)
                    assert a.weight == pytest.approx(
                        m.score([h])[0, item] - m.score([rest])[0, item], abs=1e-4
                    )
        assert hits >= 15, (m.name, hits)
