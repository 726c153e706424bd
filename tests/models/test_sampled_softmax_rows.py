"""Sampled softmax encodes only the item rows a batch uses, with the same loss and gradients.

The step encodes the histories, targets and negatives (torch.unique of them) instead of the
whole catalogue; each item row is encoded on its own (ID + title projection + attributes,
LayerNorm per row), so the loss, the logits and every parameter's gradient must equal the
old computation over the full table (`item_table()`), with the same negatives.
"""

from __future__ import annotations

import pytest
import torch

from soutui.models.sasrec import SASRec, SASRecConfig

N_ITEMS = 400


def _model(**kw: object) -> SASRec:
    torch.manual_seed(0)
    cfg = SASRecConfig(
        n_items=N_ITEMS, max_len=12, d_model=16, n_heads=2, n_layers=1, text_dim=8, n_attrs=7, attrs_per_item=3,
        dropout=0.0, emb_dropout=0.0, id_dropout=0.0, time_dropout=0.0, loss="sampled_softmax", n_negatives=30,
        cooc_neighbors=0, temperature=0.7,
    )  # fmt: skip
    for k, v in kw.items():
        setattr(cfg, k, v)
    net = SASRec(cfg)
    with torch.no_grad():
        assert net.items.text is not None and net.items.attrs is not None and net.bias is not None
        net.items.text.normal_()
        net.items.attrs.copy_(torch.randint(0, 8, net.items.attrs.shape))
        net.bias.normal_(std=0.1)
        if net.seen_w is not None:
            net.seen_w.fill_(0.3)
        pop = torch.rand(N_ITEMS + 1) ** 3 + 1e-3
        pop[0] = 0.0
        net.logq.copy_((pop / pop.sum()).log())
    return net.train()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, 60, (5, 12), generator=g)  # histories over the first 60 items only
    seq[0, :7] = 0  # left padding
    seq[3, :2] = 0
    targets = torch.roll(seq, -1, dims=1)
    targets[:, -1] = torch.randint(1, N_ITEMS + 1, (5,), generator=g)
    targets[seq == 0] = 0
    ts = torch.cumsum(torch.rand(5, 12, generator=g), 1)
    ts[seq == 0] = -1.0
    return seq, targets, ts


def _old(net: SASRec, seq: torch.Tensor, targets: torch.Tensor, ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The computation before: the whole table encoded, the negatives drawn from the same stream."""
    neg = torch.multinomial(net.logq.exp(), net.cfg.n_negatives, replacement=True)
    table = net.item_table()
    h = net.encode(seq, ts, table)
    rows, cols = torch.nonzero(targets > 0, as_tuple=True)
    y = targets[rows, cols]
    return net._sampled_loss(seq, rows, cols, h[rows, cols] * net.scale, y, neg, table[y], table[neg])


def _grads(net: SASRec) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _with_graph(net: SASRec) -> SASRec:
    """Random co-occurrence neighbours (row 0 = padding: none) and a non-zero graph projection."""
    g = torch.Generator().manual_seed(5)
    k = net.cfg.cooc_neighbors
    idx = torch.randint(1, N_ITEMS + 1, (N_ITEMS + 1, k), generator=g)
    val = torch.rand(N_ITEMS + 1, k, generator=g)
    idx[0], val[0], idx[3, 2:], val[3, 2:] = 0, 0.0, 0, 0.0  # item 3 has only two neighbours
    net.set_cooccurrence(idx, val)
    assert net.graph_proj is not None
    with torch.no_grad():
        net.graph_proj.weight.normal_(std=0.3)
    return net


@pytest.mark.parametrize(("seen_bias", "graph"), [(True, False), (False, False), (True, True)])
def test_loss_and_gradients_equal_the_full_table_computation(seen_bias: bool, graph: bool) -> None:
    # with graph-aware item vectors, each used row also encodes its neighbours
    net = _with_graph(_model(seen_bias=seen_bias, cooc_neighbors=6, graph_neighbors=4)) if graph else _model(seen_bias=seen_bias)
    seq, targets, ts = _batch()
    full_table_calls = []
    net.items.register_forward_hook(lambda *_: full_table_calls.append(1))

    torch.manual_seed(7)
    logits, loss = net(seq, targets, ts)
    assert loss is not None
    loss.backward()
    new = _grads(net)
    assert not full_table_calls  # the catalogue was not encoded whole
    net.zero_grad(set_to_none=True)

    torch.manual_seed(7)
    old_logits, old_loss = _old(net, seq, targets, ts)
    old_loss.backward()
    old = _grads(net)
    assert full_table_calls

    torch.testing.assert_close(logits, old_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, old_loss, rtol=1e-6, atol=1e-6)
    assert set(new) == set(old) and "items.id_emb.weight" in new and "items.text_proj.weight" in new
    assert ("graph_proj.weight" in new) == graph
    for name in old:
        torch.testing.assert_close(new[name], old[name], rtol=1e-5, atol=1e-6, msg=name)
    emb = new["items.id_emb.weight"]
    used = torch.unique(torch.cat([seq.flatten(), targets.flatten()]))
    unused = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    unused[used] = False
    assert emb[used[used > 0]].abs().sum() > 0  # the rows the batch uses learn ...
    assert emb[unused].abs().sum() < emb.abs().sum()  # ... and only the sampled negatives besides them


def test_dropout_and_the_training_step_run() -> None:
    net = _model(id_dropout=0.3, dropout=0.2, emb_dropout=0.2, time_dropout=0.3)
    seq, targets, ts = _batch()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        _, loss = net(seq, targets, ts)
        assert loss is not None and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3])  # it learns the batch


def test_seen_counts_equal_comparing_every_prefix_with_every_candidate() -> None:
    """The running count gives the same (N, 1+M) counts as the direct (N, T, 1+M) comparison,
    with repeats in the histories, left padding, and the padding row drawn as a negative."""
    from soutui.models.sasrec import seen_counts

    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, 9, (6, 10), generator=g)
    seq[:, :3] = 0  # left padding
    targets = torch.randint(1, 9, (6, 10), generator=g) * (torch.rand(6, 10, generator=g) < 0.6)
    neg = torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(0, 9, (11,), generator=g)])
    rows, cols = torch.nonzero(targets > 0, as_tuple=True)
    y = targets[rows, cols]
    upto = torch.arange(10).unsqueeze(0) <= cols.unsqueeze(1)
    prefix = torch.where(upto, seq[rows], torch.zeros_like(seq[rows]))
    cand = torch.cat([y.unsqueeze(1), neg.unsqueeze(0).expand(len(y), -1)], dim=1)
    direct = (prefix.unsqueeze(2) == cand.unsqueeze(1)).sum(1)
    assert torch.equal(seen_counts(seq, rows, cols, y, neg).long(), direct)


def _per_candidate_loss(
    net: SASRec, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, hn: torch.Tensor, y: torch.Tensor,
    neg: torch.Tensor, w_pos: torch.Tensor, w_neg: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss written per candidate: an (N, 1+M) candidate matrix and a gather of every term."""
    from soutui.models.sasrec import seen_counts

    logits = torch.cat([(hn * w_pos).sum(-1, keepdim=True), hn @ w_neg.T], dim=1)
    cand = torch.cat([y.unsqueeze(1), neg.unsqueeze(0).expand(len(y), -1)], dim=1)
    assert net.bias is not None
    logits = logits + net.bias[cand]
    if net.seen_w is not None:
        logits = logits + net.seen_w * seen_counts(seq, rows, cols, y, neg).to(logits.dtype)
    logits = logits / net.cfg.temperature - net.logq[cand]
    hit = cand[:, 1:] == y.unsqueeze(1)
    logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(hit, torch.finfo(logits.dtype).min)], 1)
    return logits, torch.nn.functional.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))


@pytest.mark.parametrize("seen_bias", [True, False])
def test_shared_negatives_terms_broadcast_equal_the_per_candidate_gather(seen_bias: bool) -> None:
    """The negatives' bias and logQ are gathered once (M,) and broadcast: same logits, loss and
    gradients (item bias included) as gathering them for every (position, candidate), with a
    negative that is also a target (an accidental hit, masked)."""
    net = _model(seen_bias=seen_bias)
    seq, targets, ts = _batch()
    rows, cols = torch.nonzero(targets > 0, as_tuple=True)
    y = targets[rows, cols]
    neg = torch.cat([y[:3], torch.multinomial(net.logq.exp(), 27, replacement=True)])
    table = net.item_table()
    h = net.encode(seq, ts, table)
    args = (seq, rows, cols, h[rows, cols] * net.scale, y, neg, table[y], table[neg])
    results = []
    for fn in (net._sampled_loss, lambda *a: _per_candidate_loss(net, *a)):
        net.zero_grad(set_to_none=True)
        logits, loss = fn(*args)
        loss.backward(retain_graph=True)
        results.append((logits.detach(), loss.detach(), _grads(net)))
    (logits, loss, grads), (ref_logits, ref_loss, ref_grads) = results
    assert (logits == torch.finfo(logits.dtype).min).any()  # the accidental hits were masked
    torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert set(grads) == set(ref_grads) and "bias" in grads
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-6, msg=name)
