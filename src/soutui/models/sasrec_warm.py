"""Warm-starting a SASRec network from an older one whose item vocabulary was smaller or ordered differently.

Why: a retrain (soutui.training.retrain) should not throw away what the serving model
learned. Every weight that does not depend on the catalogue (attention, positions, time,
content projections) is copied as is; item rows (ID embedding, item bias) are copied by
item id, so the item order of the new vocabulary does not matter; attribute embeddings are
copied by attribute, matched through the items both vocabularies share.

Items the old model never saw are *content-initialised*: their ID embedding and bias are
the similarity-weighted mean of the old items closest to them in the model's own content
space (projected title vector + mean attribute vector), so an item nobody has bought yet
scores like the items it resembles and can be recommended at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from soutui.config import ConfigError
from soutui.models.sasrec import SASRec

# state entries with one row per item (or per attribute): rebuilt from the new data, then mapped
ITEM_ROWS = {"items.id_emb.weight", "bias", "logq", "items.text", "items.attrs", "cooc_idx", "cooc_val"}
ATTR_ROWS = "items.attr_emb.weight"
NEIGHBOURS = 5  # old items a new item's ID embedding and bias are averaged from
SHARPNESS = 20.0  # softmax(cosine x SHARPNESS) over those neighbours: the closest dominates


def vocabulary_map(old_ids: Sequence[Any], new_ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(new indices, old indices) of the items both vocabularies hold, matched by id."""
    old_index = {str(x): i for i, x in enumerate(old_ids)}
    pairs = [(j, old_index[str(x)]) for j, x in enumerate(new_ids) if str(x) in old_index]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new, old = zip(*pairs, strict=True)
    return np.asarray(new, np.int64), np.asarray(old, np.int64)


@torch.no_grad()
def warm_start_net(
    net: SASRec, old: SASRec, old_ids: Sequence[Any], new_ids: Sequence[Any]
) -> dict[str, Any]:
    """Copy `old`'s weights into the freshly built `net` (new vocabulary `new_ids`, content
    buffers already set); returns what was carried over, for the training report."""
    new_state, old_state = net.state_dict(), old.state_dict()
    for key in sorted(set(new_state) - set(old_state)):
        raise ConfigError(
            f"cannot warm-start sasrec: the new network has {key} but the previous model has not (item content "
            "it was not trained with, e.g. titles); use the same content (encoder) or retrain from scratch"
        )
    for key, value in old_state.items():
        if key in ITEM_ROWS or key == ATTR_ROWS:
            continue
        if key not in new_state or new_state[key].shape != value.shape:
            got = None if key not in new_state else tuple(new_state[key].shape)
            raise ConfigError(
                f"cannot warm-start sasrec: {key} is {tuple(value.shape)} in the previous model but {got} now "
                "(a different network size or item content, e.g. another text encoder); retrain from scratch"
            )
        new_state[key].copy_(value)
    new_j, old_i = vocabulary_map(old_ids, new_ids)
    rows_new, rows_old = torch.from_numpy(new_j + 1), torch.from_numpy(old_i + 1)  # row 0 = padding
    net.items.id_emb.weight[rows_new] = old.items.id_emb.weight[rows_old]
    if net.bias is not None and old.bias is not None:
        net.bias[rows_new] = old.bias[rows_old]
    attrs = _copy_attributes(net, old, rows_new, rows_old)
    fresh = np.setdiff1d(np.arange(len(new_ids)), new_j) + 1
    _content_init(net, torch.from_numpy(fresh), rows_new)
    return {"items_kept": len(new_j), "items_new": len(fresh), "items_dropped": len(old_ids) - len(new_j),
            "attributes_kept": attrs, "new_items_init": "content neighbours" if _has_content(net) else "zero"}  # fmt: skip


def _copy_attributes(net: SASRec, old: SASRec, rows_new: torch.Tensor, rows_old: torch.Tensor) -> int:
    """Attribute embeddings copied by attribute; attributes are matched through shared items
    (attribute ids are re-indexed per fit, but an item's attribute list keeps its order)."""
    a_new, a_old = net.items.attrs, old.items.attrs
    if net.items.attr_emb is None or old.items.attr_emb is None or a_new is None or a_old is None:
        return 0
    width = min(a_new.shape[1], a_old.shape[1])
    pairs = torch.stack([a_new[rows_new, :width].reshape(-1), a_old[rows_old, :width].reshape(-1)], 1)
    pairs = torch.unique(pairs[(pairs > 0).all(1)], dim=0)  # (P, 2) new attribute row, old attribute row
    net.items.attr_emb.weight[pairs[:, 0]] = old.items.attr_emb.weight[pairs[:, 1]]
    return int(len(torch.unique(pairs[:, 0])))


def _has_content(net: SASRec) -> bool:
    return net.items.text_proj is not None or net.items.attr_emb is not None


def content_vectors(net: SASRec) -> torch.Tensor:
    """(I+1, D) each item's content side in the model's own space: projected title + mean attribute."""
    enc = net.items
    out = torch.zeros(net.cfg.n_items + 1, net.cfg.d_model)
    if enc.text_proj is not None and enc.text is not None:
        out = out + enc.text_proj(enc.text)
    if enc.attr_emb is not None and enc.attrs is not None:
        cnt = (enc.attrs > 0).sum(1, keepdim=True).clamp(min=1)
        out = out + enc.attr_emb(enc.attrs).sum(1) / cnt
    return out


def _content_init(net: SASRec, fresh: torch.Tensor, known: torch.Tensor) -> None:
    """New items' ID embedding and bias from their closest known items by content (cosine);
    without content (or without known items) the ID embedding stays zero and the bias is the
    known items' mean, so the item is at least not ranked by a random vector."""
    if not len(fresh):
        return
    net.items.id_emb.weight[fresh] = 0.0
    if not len(known):
        return
    if net.bias is not None:
        net.bias[fresh] = net.bias[known].mean()
    if not _has_content(net):
        return
    vec = torch.nn.functional.normalize(content_vectors(net), dim=1)  # (I+1, D)
    sim = vec[fresh] @ vec[known].T  # (F, K)
    top, idx = sim.topk(min(NEIGHBOURS, len(known)), dim=1)  # (F, n)
    w = torch.softmax(top * SHARPNESS, dim=1).unsqueeze(-1)  # (F, n, 1)
    neighbours = known[idx]  # (F, n) item rows
    net.items.id_emb.weight[fresh] = (net.items.id_emb.weight[neighbours] * w).sum(1)
    if net.bias is not None:
        net.bias[fresh] = (net.bias[neighbours] * w.squeeze(-1)).sum(1)


@torch.no_grad()
def reset_cold_items(net: SASRec, counts: np.ndarray) -> bool:
    """Items never seen in training (`counts` 0) were only ever pushed down as negatives: drop their ID
    embedding and give them the mean bias of rare items, so content alone places them. False (nothing
    done) when every item was seen or the network reads no content."""
    cold = torch.from_numpy(np.flatnonzero(counts == 0) + 1)
    if not len(cold) or (net.items.text_proj is None and net.items.attr_emb is None):
        return False
    net.items.id_emb.weight[cold] = 0.0
    if net.bias is not None:
        rare = torch.from_numpy(np.flatnonzero((counts > 0) & (counts <= 5)) + 1)
        if not len(rare):
            rare = torch.from_numpy(np.flatnonzero(counts > 0) + 1)
        if len(rare):
            net.bias[cold] = net.bias[rare].mean()
    return True
