"""Choosing a blend weight on validation: scores = base + w * extra, for SASRec's co-occurrence head.

The head's neighbours are fitted on the TRAINING sequences (ItemKNN, inside the model);
its weight is a choice read on VALIDATION NDCG@10 only, made here with the protocol's
one `pessimistic_ranks`. Both parts are scored once per batch and blended for every
candidate weight, so trying nine weights costs one validation pass, not nine.
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
) -> dict[float, float]:
    """Validation NDCG@10 (full ranking, pessimistic ties) of base + w * extra for each weight w."""
    ranks: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    for start in range(0, len(valid), batch_size):
        hist = valid.histories[start : start + batch_size]
        times = valid.timestamps[start : start + batch_size] if valid.timestamps is not None else None
        base, extra = parts(hist, times)
        tgt = valid.targets[start : start + batch_size]
        for w in weights:
            ranks[w].append(pessimistic_ranks(base + w * extra, tgt))
    return {w: round(ndcg_from_ranks(np.concatenate(r), 10), 6) for w, r in ranks.items()}
