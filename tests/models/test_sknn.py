"""Session-kNN (V-SKNN) against scores worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from soutui.data.sequences import SequenceData
from soutui.models.sknn import SessionKNN, decay_weights


def sessions(*seqs: list[int], n_items: int = 7) -> SequenceData:
    ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    users = np.array([f"s{u}" for u in range(len(seqs))], dtype=object)
    return SequenceData(ids, users, [np.array(s, np.int64) for s in seqs], None)


DATA = sessions([0, 1, 2], [0, 3], [1, 4, 5, 6])


def test_scores_are_the_neighbours_summed_similarity_scaled_to_the_best_item() -> None:
    # history [0, 1]: item 0 weighs 1/2, item 1 weighs 1. Similarity / sqrt(session length):
    # s0 holds both: 1.5 / sqrt 3 = 0.866; s1 holds item 0: 0.5 / sqrt 2 = 0.354; s2 holds item 1: 1 / 2 = 0.5
    s0, s1, s2 = 1.5 / np.sqrt(3), 0.5 / np.sqrt(2), 0.5
    got = SessionKNN(neighbors=2).fit(DATA).score([np.array([0, 1])])[0]
    want = np.array([s0, s0 + s2, s0, 0.0, s2, s2, s2]) / (s0 + s2)  # s1 is not among the 2 best
    np.testing.assert_allclose(got, want, atol=1e-6)
    every = SessionKNN(neighbors=3).fit(DATA).score([np.array([0, 1])])[0]
    want = np.array([s0 + s1, s0 + s2, s0, s1, s2, s2, s2]) / (s0 + s2)
    np.testing.assert_allclose(every, want, atol=1e-6)
    plain = SessionKNN(neighbors=2, normalize=False).fit(DATA).score([np.array([0, 1])])[0]
    # without the length weight s2 (1.0) beats s1 (0.5) still, and s0 has 1.5
    np.testing.assert_allclose(plain, np.array([1.5, 2.5, 1.5, 0.0, 1.0, 1.0, 1.0]) / 2.5, atol=1e-6)


def test_the_latest_position_of_a_repeated_item_counts() -> None:
    items, w = decay_weights(np.array([1, 0, 1]))
    assert dict(zip(items.tolist(), w.tolist(), strict=True)) == pytest.approx({0: 2 / 3, 1: 1.0})


def test_items_no_neighbour_holds_keep_the_popularity_order_and_batches_equal_single_scores() -> None:
    model = SessionKNN(neighbors=1).fit(DATA)
    scores = model.score([np.array([3]), np.array([2, 0]), np.array([], np.int64)])
    # history [3]: only s1 holds item 3 -> items 0 and 3 score 1; the rest by popularity (item 1 twice)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6) and scores[0, 3] == pytest.approx(1.0, abs=1e-6)
    assert scores[0, 1] > scores[0, 2] > 0 and scores[0, 1] < 1e-6
    assert np.argmax(scores[2]) in (0, 1) and scores[2].max() < 1e-6  # empty history: the prior alone
    for r, h in enumerate([np.array([3]), np.array([2, 0]), np.array([], np.int64)]):
        np.testing.assert_allclose(model.score([h])[0], scores[r])


def test_a_session_holding_nothing_new_is_skipped() -> None:
    # history [0, 3] holds all of s1 = [0, 3]: skipped, so only s0 (item 0 at weight 1/2) votes
    got = SessionKNN(neighbors=3).fit(DATA).score([np.array([0, 3])])[0]
    np.testing.assert_allclose(got[:3], 1.0, atol=1e-6)
    assert got[3:].max() < 1e-6
    kept = SessionKNN(neighbors=3, skip_subsets=False).fit(DATA).score([np.array([0, 3])])[0]
    s0, s1 = 0.5 / np.sqrt(3), 1.5 / np.sqrt(2)  # s1 holds item 0 (1/2) and item 3 (1)
    np.testing.assert_allclose(kept[:4], np.array([s0 + s1, s0, s0, s1]) / (s0 + s1), atol=1e-6)
