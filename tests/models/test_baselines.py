"""Model-specific checks beyond the shared contract: features, options, bad parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from contract import cyclic_data

from soutui.data.sequences import SequenceData, leave_one_out
from soutui.evaluation.protocol import target_ranks
from soutui.features.content import UNKNOWN, ItemContent
from soutui.models.itemknn import ItemKNN, cooccurrence
from soutui.models.mlp import MLPRecommender, item_numeric, item_tokens, pad_histories
from soutui.models.popularity import Popularity, RecentPopularity
from soutui.training.trainer import LoopTrainer


def _seqs(*seqs: list[int], n_items: int = 6, ts: list[list[int]] | None = None) -> SequenceData:
    return SequenceData(
        np.array([str(i) for i in range(n_items)], dtype=object),
        np.array([f"u{i}" for i in range(len(seqs))], dtype=object),
        [np.array(s, np.int64) for s in seqs],
        [np.array(t, np.int64) for t in ts] if ts else None,
    )


def test_recent_popularity_prefers_recent_items() -> None:
    day = 86400
    data = _seqs([0, 0, 0], [1, 1], ts=[[0, day, 2 * day], [99 * day, 100 * day]])
    assert Popularity().fit(data).score([np.array([2])])[0].argmax() == 0
    assert RecentPopularity(half_life_days=7).fit(data).score([np.array([2])])[0].argmax() == 1
    with pytest.raises(ValueError, match="half_life_days"):
        RecentPopularity(half_life_days=0)


def test_cooccurrence_is_windowed_and_directional() -> None:
    c = cooccurrence(_seqs([0, 1, 2, 3]), window=2, backward_weight=0.5, distance_decay=0.5).toarray()
    assert c[0, 1] == 1.0 and c[1, 0] == 0.5  # forward vs backward
    assert c[0, 2] == 0.5 and c[0, 3] == 0.0  # distance decay, then out of the window
    assert np.diag(c).sum() == 0.0


def test_itemknn_recency_weighting_and_bm25() -> None:
    data = cyclic_data()
    for model in (ItemKNN(), ItemKNN(similarity="bm25")):
        model.fit(data)
        # the most recent item decides: after ... 3, 10 the next item is 11, not 4
        assert model.score([np.array([3, 10])])[0].argmax() == 11
    with pytest.raises(ValueError, match="similarity"):
        ItemKNN(similarity="jaccard")  # type: ignore[arg-type]


def test_neighbour_table_is_each_items_strongest_neighbours_first() -> None:
    rng = np.random.default_rng(0)
    data = _seqs(*[list(rng.choice(30, 8, replace=False)) for _ in range(60)], n_items=30)
    model = ItemKNN(neighbors=12).fit(data)
    idx, val = model.neighbour_table(5)
    sim = model.sim_.toarray()
    assert idx.shape == (31, 5) and not idx[0].any() and not val[0].any()  # row 0 = padding
    for i in range(30):
        row = sim[i]
        assert np.all(np.diff(val[i + 1]) <= 0)  # strongest first: a prefix [:g] is the top g
        kept = val[i + 1] > 0
        np.testing.assert_allclose(val[i + 1][kept], np.sort(row[row > 0])[::-1][: kept.sum()], rtol=1e-6)
        assert np.allclose(row[idx[i + 1][kept] - 1], val[i + 1][kept])


def test_mlp_item_features_from_items_table() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["b", "a", "c"],  # not in model order: features must be re-aligned
            "category": ["Beauty > Nails", "Beauty > Skin", None],
            "brand": ["OPI", "OPI", None],
            "price": [10.0, None, 30.0],
            "attributes": [
                '{"asin": "X1", "attribute_ids": [1, 2]}',
                '{"asin": "X2", "attribute_ids": [2]}',
                None,
            ],
        }
    )
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    content = ItemContent.from_items(items, ids)
    assert content.attributes == [[2], [1, 2], [], []] and content.brand is not None
    assert content.brand.tolist() == [0, 0, UNKNOWN, UNKNOWN]
    tokens, n_tokens = item_tokens(content, len(ids))
    assert tokens.shape[0] == 4 and (tokens[2:] == 0).all()  # c has no shared tokens, d is unknown
    # shared: brand OPI, attribute 2; singletons (the two categories, attribute 1) are dropped
    assert n_tokens == 3
    assert set(tokens[0][tokens[0] > 0]) == set(tokens[1][tokens[1] > 0])
    num = item_numeric(content, np.array([5.0, 1.0, 0.0, 0.0]))
    assert num.shape == (4, 3)
    assert num[:, 2].tolist() == [1.0, 0.0, 0.0, 1.0]  # price unknown for a and d


def test_mlp_rejects_misaligned_text_embeddings() -> None:
    data = cyclic_data()
    mlp = MLPRecommender(epochs=1).use_trainer(LoopTrainer(progress=False))
    with pytest.raises(ValueError, match="text has 3 rows"):
        mlp.fit(data, content=ItemContent(text=np.zeros((3, 4), np.float32)))
    with pytest.raises(ValueError, match=">= 1"):
        MLPRecommender(epochs=0)


def test_mlp_validation_is_the_protocols_with_pessimistic_ties() -> None:
    """The MLP early-stops in the shared loop on the trainer's validation NDCG@10: the best
    epoch's weights come back, and a model scoring every item equally gets the worst rank
    (the MLP's old loop counted ties in its favour: HR@10 = 1 for a constant model)."""
    split = leave_one_out(cyclic_data())
    trainer = LoopTrainer(progress=False)
    m = MLPRecommender(epochs=3, batch_size=64, dim=16, hidden=32, patience=5, seed=0)
    m.use_trainer(trainer).fit(split.train, split.valid)
    report = m.training_report()
    assert report is not None and len(report["history"]) == 3
    assert report["best_metric"] == pytest.approx(max(r["valid"] for r in report["history"]))
    assert trainer.validate(m, split.valid) == pytest.approx(report["best_metric"], abs=1e-6)
    with torch.no_grad():
        for p in m.net_.parameters():
            p.zero_()  # every item now scores exactly the same
    ranks, _ = target_ranks(m, split.valid)
    assert (ranks == split.train.n_items - 1).all()
    assert trainer.validate(m, split.valid) == 0.0


def test_mlp_full_ce_trains_on_the_served_scores() -> None:
    """With loss="full_ce" the training logits are the served scores over the whole catalogue (same
    user and item towers, same bias), so the loss is the cross-entropy of what `score` ranks; the
    sampled-BCE loss stays available, and an unknown loss is refused."""
    split = leave_one_out(cyclic_data())
    m = MLPRecommender(epochs=2, batch_size=64, dim=16, hidden=32, seed=0).use_trainer(LoopTrainer(progress=False))
    m.fit(split.train, split.valid)
    assert m.net_.softmax
    histories = [np.array(h, np.int64) for h in split.test.histories[:5]]
    hist, mask, counts = (torch.from_numpy(a) for a in pad_histories(histories, m.max_history))
    target = torch.from_numpy(np.asarray(split.test.targets[:5], np.int64))[:, None]
    with torch.no_grad():
        logits, loss = m.net_(hist, mask, counts, target)
    served = m.score(histories)
    assert logits.shape == served.shape == (5, split.train.n_items)
    np.testing.assert_allclose(logits.numpy(), served, rtol=1e-5, atol=1e-5)
    expected = -torch.log_softmax(torch.from_numpy(served), 1)[torch.arange(5), target[:, 0]].mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    bce = MLPRecommender(epochs=1, batch_size=64, dim=16, hidden=32, loss="bce").use_trainer(LoopTrainer(progress=False))
    assert not bce.fit(split.train).net_.softmax
    with pytest.raises(ValueError, match="loss must be one of full_ce, bce"):
        MLPRecommender(loss="softmax")
