"""SASRec wrapper: learns a known pattern, round-trips through save/load, rejects bad config."""

from __future__ import annotations

import numpy as np
import pytest
from sasrec_fixtures import N_ITEMS, SMALL, cyclic_data, sasrec

from soutui.config import ConfigError
from soutui.evaluation.protocol import evaluate_full_ranking
from soutui.features.content import ItemContent
from soutui.models.registry import load_model
from soutui.models.sasrec_recommender import SASRecRecommender


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return cyclic_data()


@pytest.fixture(scope="module")
def fitted(split):  # type: ignore[no-untyped-def]
    return sasrec(**SMALL, epochs=12, patience=20).fit(split.train, split.valid)


def test_learns_next_item_pattern(fitted, split) -> None:  # type: ignore[no-untyped-def]
    m = evaluate_full_ranking(fitted, split.test, N_ITEMS, (1, 5))
    assert m["HR@1"] > 0.8, m  # random would be ~1/24
    items, _ = fitted.recommend(np.array([3, 4, 5]), k=1)
    assert items[0] == 6


def test_save_load_roundtrip(fitted, split, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fitted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    h = split.test.histories[:20]
    np.testing.assert_allclose(loaded.score(h), fitted.score(h), atol=1e-5)
    assert (tmp_path / "m" / "items.json").exists()


def test_content_and_time_variant_trains(split) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    text = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    attrs = [[i % 3, 100 + i % 5] for i in range(N_ITEMS)]
    m = sasrec(**SMALL, epochs=3, use_time=True, id_dropout=0.2, gated=True, loss="sampled_softmax",
               n_negatives=8)  # fmt: skip
    m.fit(split.train, split.valid, content=ItemContent(text=text, attributes=attrs))
    s = m.score(split.test.histories[:4], split.test.timestamps[:4])
    assert s.shape == (4, N_ITEMS) and np.isfinite(s).all()
    assert not np.allclose(s, m.score(split.test.histories[:4]))  # timestamps are used


def test_unknown_parameter_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="d_modle"):
        SASRecRecommender(d_modle=32)
    with pytest.raises(ConfigError, match="loss"):
        SASRecRecommender(loss="bpr")


def test_content_must_match_catalogue(split) -> None:  # type: ignore[no-untyped-def]
    m = sasrec(**SMALL, epochs=1)
    with pytest.raises(ValueError, match="text has 3 rows but the catalogue has 24 items"):
        m.fit(split.train, content=ItemContent(text=np.zeros((3, 4), np.float32)))


def test_fit_without_a_trainer_says_how_to_get_one(split) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match=r"use_trainer\(soutui.training.trainer.LoopTrainer\(\)\)"):
        SASRecRecommender(**SMALL, epochs=1).fit(split.train)


def _cold_twin_fit(split, valid: bool):  # type: ignore[no-untyped-def]
    """Item 23 never appears in training; its title is item 6's. Nothing hidden (item_mask 0)."""
    cold = N_ITEMS - 1
    train = split.train.with_sequences([s[s != cold] for s in split.train.sequences], None)
    text = np.eye(N_ITEMS, dtype=np.float32)
    text[cold] = text[6]
    m = sasrec(**SMALL, epochs=12, id_dropout=0.5, use_attrs=False, item_mask=0.0)
    return m.fit(train, split.valid if valid else None, content=ItemContent(text=text)), cold


def test_cold_item_is_placed_by_its_content(split) -> None:  # type: ignore[no-untyped-def]
    """An item absent from training but with the same title as item 6 ranks close to item 6.
    Fitted without validation, so the reset is always applied (no validation check to refuse it)."""
    m, cold = _cold_twin_fit(split, valid=False)
    assert m.net_ is not None and float(m.net_.items.id_emb.weight[cold + 1].abs().sum()) == 0.0
    ranks = [int((m.score([h])[0] > m.score([h])[0][cold]).sum()) for h in ([4, 5], [3, 4, 5])]
    assert max(ranks) <= 3, ranks  # the cold twin of the true next item (6) is near the top


def test_cold_item_reset_is_kept_only_if_validation_holds(split) -> None:  # type: ignore[no-untyped-def]
    """With validation, the reset is a choice read on validation: kept unless NDCG@10 drops, and
    then the trained weights come back unchanged (on this toy either outcome can happen)."""
    m, cold = _cold_twin_fit(split, valid=True)
    assert m.net_ is not None and m.cold_reset_valid_ is not None
    before, after = m.cold_reset_valid_
    row = float(m.net_.items.id_emb.weight[cold + 1].abs().sum())
    assert (row == 0.0) == (after >= before), (before, after, row)
    report = m.training_report()
    assert report is not None and report["cold_reset_valid"] == [before, after]


def test_cooccurrence_head_is_chosen_on_validation_and_saved(split, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = sasrec(**SMALL, epochs=2, cooc_neighbors=4, cooc_half_lives=(0.25, 2.0, 0.5))
    m.fit(split.train, split.valid)
    assert m.net_ is not None and m.cooc_valid_ is not None
    import torch

    extra = m.net_.cooc_scores(torch.tensor([[4, 5, 6]]))  # item rows of items 3, 4, 5
    assert int(extra.argmax()) == 6  # the training sequences say 5 -> 6
    assert float(extra.max()) == pytest.approx(1.0)
    assert 0.0 in m.cooc_valid_
    alpha = float(m.net_.cooc_alpha)
    assert m.cooc_valid_[alpha] == max(m.cooc_valid_.values())  # the best weight on VALIDATION
    # ... at the best half-life: the chosen pair is the best of every (half-life, weight) tried
    assert m.half_life_valid_ is not None and list(m.half_life_valid_) == [1.0, 0.25, 0.5, 2.0]  # own first
    chosen = m.net_.cfg.cooc_half_life
    assert m.half_life_valid_[chosen] == max(m.half_life_valid_.values()) == m.cooc_valid_[alpha]
    report = m.training_report()
    assert report is not None and report["head_half_life"] == chosen
    m.save(tmp_path / "m")
    h = split.test.histories[:10]
    loaded = load_model(tmp_path / "m")
    assert loaded._net().cfg.cooc_half_life == chosen  # type: ignore[attr-defined]
    np.testing.assert_allclose(loaded.score(h), m.score(h), atol=1e-5)


def test_eval_split_take_keeps_rows_aligned(split) -> None:  # type: ignore[no-untyped-def]
    rows = np.array([5, 0, 7])
    sub = split.test.take(rows, "picked")
    assert sub.name == "picked" and len(sub) == 3
    assert list(sub.users) == list(split.test.users[rows])
    assert list(sub.targets) == list(split.test.targets[rows])
    for j, i in enumerate(rows):
        assert list(sub.histories[j]) == list(split.test.histories[i])
        assert list(sub.timestamps[j]) == list(split.test.timestamps[i])


def test_item_mask_hides_history_items_only_in_training() -> None:
    import torch

    from soutui.models.sasrec import SASRec, SASRecConfig

    net = SASRec(SASRecConfig(n_items=20, max_len=6, d_model=8, n_heads=2, item_mask=1.0, use_time=False,
                              dropout=0.0, emb_dropout=0.0, id_dropout=0.0, cooc_neighbors=0))  # fmt: skip
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = torch.tensor([[0, 0, 11, 9, 17, 2]])  # other items at the same positions
    table = net.item_table()
    net.train()  # every item hidden: only the positions are left, so the two histories read alike
    torch.testing.assert_close(net.encode(a, None, table), net.encode(b, None, table))
    net.eval()  # serving never hides anything
    assert not torch.allclose(net.encode(a, None, table), net.encode(b, None, table))


def test_contrastive_term_is_added_in_training_only() -> None:
    import torch
    import torch.nn.functional as F

    from soutui.models.sasrec import SASRec, SASRecConfig

    cfg = dict(n_items=20, max_len=6, d_model=8, n_heads=2, use_time=False, dropout=0.0, emb_dropout=0.0,
               id_dropout=0.0, item_mask=0.0, cooc_neighbors=0, seen_bias=False)  # fmt: skip
    seq = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 7, 8, 9, 10], [3, 5, 7, 9, 11, 13]])
    tgt = torch.tensor([[0, 2, 3, 4, 5, 6], [0, 0, 8, 9, 10, 11], [5, 7, 9, 11, 13, 15]])
    torch.manual_seed(0)
    plain = SASRec(SASRecConfig(**cfg))  # type: ignore[arg-type]
    with_cl = SASRec(SASRecConfig(**cfg, cl_weight=0.5))  # type: ignore[arg-type]
    with_cl.load_state_dict(plain.state_dict())
    plain.train(), with_cl.train()
    _, base = plain(seq, tgt)
    _, total = with_cl(seq, tgt)
    # without dropout both views are equal, so the term is the InfoNCE of the states with themselves
    z = plain.encode(seq, None, plain.item_table())[:, -1]
    nce = F.cross_entropy((z @ z.T) * plain.scale, torch.arange(3))
    assert base is not None and total is not None
    torch.testing.assert_close(total, base + 0.5 * nce)


def test_contrastive_term_refuses_the_sampled_loss() -> None:
    with pytest.raises(ConfigError, match="cl_weight needs loss='full_ce'"):
        SASRecRecommender(cl_weight=0.1, loss="sampled_softmax")


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_scores_start_from_log_popularity_at_any_temperature(split, temperature: float) -> None:  # type: ignore[no-untyped-def]
    """Scores are divided by the temperature, so the item bias starts at temperature x the centred
    log popularity: the prior the scores start from does not depend on the temperature."""
    m = sasrec(**{**SMALL, "lr": 0.0}, epochs=1, temperature=temperature, cooc_neighbors=0)
    m.fit(split.train)
    counts = np.bincount(np.concatenate(split.train.sequences), minlength=N_ITEMS)
    pop = np.log((counts + 1.0) / (counts + 1.0).sum())
    bias = m._net().bias.detach().numpy()[1:]
    np.testing.assert_allclose(bias / temperature, pop - pop.mean(), atol=1e-5)


def _net_with_neighbours(**extra: float):  # type: ignore[no-untyped-def]
    import torch

    from soutui.models.sasrec import SASRec, SASRecConfig

    cfg = SASRecConfig(n_items=12, max_len=6, d_model=8, n_heads=2, use_time=False, dropout=0.0, emb_dropout=0.0,
                       id_dropout=0.0, item_mask=0.0, cooc_neighbors=3, seen_bias=False, **extra)  # type: ignore[arg-type]  # fmt: skip
    net = SASRec(cfg)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(1, 13, (13, 3), generator=g)
    idx[0] = 0
    idx[5] = 0  # item 5 has no neighbours
    net.set_cooccurrence(idx, torch.rand(13, 3, generator=g) * (idx > 0))
    return net


def test_cooc_teacher_is_the_heads_evidence_of_each_positions_own_history() -> None:
    import torch

    net = _net_with_neighbours()
    seq = torch.tensor([[0, 3, 7, 2, 9, 4], [0, 0, 0, 5, 5, 1]])
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([5, 3, 4])
    q = net.cooc_teacher(seq, rows, cols)
    for n, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        prefix = seq[r, : c + 1].unsqueeze(0)  # left-padded history ending at the position
        head = net.cooc_scores(prefix)[0]  # the head at serving time, scaled to its row maximum
        head[prefix[prefix > 0] - 1] = 0.0  # the history's own items are not taught
        expect = head / head.sum() if head.sum() > 0 else head
        torch.testing.assert_close(q[n], expect)
    assert q[2].sum() == 0  # a history of items without neighbours teaches nothing
    assert (q[0, seq[0, 1:] - 1] == 0).all()
    torch.testing.assert_close(q[:2].sum(1), torch.ones(2))


def test_cooc_distill_mixes_the_label_with_the_teacher_in_training_only() -> None:
    import torch
    import torch.nn.functional as F

    net = _net_with_neighbours(cooc_distill=0.4)
    plain = _net_with_neighbours(cooc_distill=0.0)
    plain.load_state_dict(net.state_dict())
    seq = torch.tensor([[0, 3, 7, 2, 9, 4], [0, 0, 0, 5, 5, 1]])
    tgt = torch.tensor([[0, 7, 2, 9, 4, 6], [0, 0, 0, 5, 1, 8]])
    net.train(), plain.train()
    logits, loss = net(seq, tgt)
    _, base = plain(seq, tgt)
    rows, cols = torch.nonzero(tgt > 0, as_tuple=True)
    q = net.cooc_teacher(seq, rows, cols)
    logp = F.log_softmax(logits, dim=1)
    ce = F.nll_loss(logp, tgt[rows, cols] - 1, reduction="none")
    w = 0.4 * (q.sum(1) > 0).float()
    assert loss is not None and base is not None
    torch.testing.assert_close(loss, ((1 - w) * ce + w * -(q * logp).sum(1)).mean())
    torch.testing.assert_close(base, ce.mean())
    assert (w == 0).any() and (w > 0).any()  # both kinds of position are in the batch


def test_cooc_distill_applies_only_where_there_is_a_teacher() -> None:
    from soutui.models.sasrec import SASRec, SASRecConfig

    assert _net_with_neighbours(cooc_distill=0.3).distill_weight() == 0.3
    for off in ({"cooc_neighbors": 0}, {"loss": "sampled_softmax"}, {"dense_loss": True}):
        assert SASRec(SASRecConfig(n_items=5, cooc_distill=0.3, **off)).distill_weight() == 0.0  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        SASRecRecommender(cooc_distill=1.0)


def test_graph_term_adds_the_weighted_mean_of_each_items_neighbours() -> None:
    import torch

    net = _net_with_neighbours(graph_neighbors=2).eval()
    assert net.graph_proj is not None and not net.graph_proj.weight.any()  # starts as the plain table
    torch.testing.assert_close(net.item_table(), net.items())
    with torch.no_grad():
        net.graph_proj.weight.copy_(torch.eye(8))
    base, table = net.items(), net.item_table()
    assert net.cooc_idx is not None and net.cooc_val is not None
    for i in range(13):
        idx, val = net.cooc_idx[i, :2], net.cooc_val[i, :2]  # the two strongest neighbours only
        mean = (base[idx] * val.unsqueeze(1)).sum(0) / val.sum() if val.sum() > 0 else torch.zeros(8)
        torch.testing.assert_close(table[i], base[i] + mean)
    assert not table[0].any() and torch.equal(table[5], base[5])  # padding stays zero; no neighbours, no term
    assert _net_with_neighbours(graph_neighbors=0).graph_proj is None
    with pytest.raises(ConfigError, match="set cooc_neighbors > 0 or graph_neighbors=0"):
        SASRecRecommender(graph_neighbors=10, cooc_neighbors=0)
    with pytest.raises(ConfigError, match="graph_neighbors must be >= 0"):
        SASRecRecommender(graph_neighbors=-1)
