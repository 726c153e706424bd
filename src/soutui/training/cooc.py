"""Choosing a blend weight on validation: scores = base + w * extra, for SASRec's co-occurrence head.

The head's neighbours are fitted on the TRAINING sequences (ItemKNN, inside the model);
its weight is a choice read on VALIDATION NDCG@10 only, made here with the protocol's
one `pessimistic_ranks`. The base and every candidate extra (e.g. the head at several
history half-lives) are scored once per batch and blended for every candidate weight, so
trying nine weights of four extras costs one validation pass, not 36.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soutui.data.sequences import EvalSplit
from soutui.evaluation.metrics import ndcg_from_ranks
from soutui.evaluation.protocol import pessimistic_ranks
from soutui.models.fitting import PartsFn


def blend_weights(
    parts: PartsFn, valid: EvalSplit, weights: Sequence[float], batch_size: int = 256
) -> list[dict[float, float]]:
    """Validation NDCG@10 (full ranking, pessimistic ties) of base + w * extra for each candidate
    extra and weight w: one {weight: NDCG@10} table per extra, in the order `parts` gives them.
    Weight 0 (the base alone) is scored once and shared by every table."""
    ranks: list[dict[float, list[np.ndarray]]] = []
    for start in range(0, len(valid), batch_size):
        hist = valid.histories[start : start + batch_size]
        times = valid.timestamps[start : start + batch_size] if valid.timestamps is not None else None
        base, extras = parts(hist, times)
        tgt = valid.targets[start : start + batch_size]
        if not ranks:
            ranks = [{w: [] for w in weights} for _ in extras]
        alone = pessimistic_ranks(base, tgt) if 0.0 in weights else None  # weight 0: shared by every extra
        for table, extra in zip(ranks, extras, strict=True):
            for w in weights:
                r = alone if w == 0.0 and alone is not None else pessimistic_ranks(base + w * extra, tgt)
                table[w].append(r)
    return [{w: round(ndcg_from_ranks(np.concatenate(r), 10), 6) for w, r in t.items()} for t in ranks]
