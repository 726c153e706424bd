"""Choosing the co-occurrence head's blend on validation: every candidate extra and weight scored."""

from __future__ import annotations

import numpy as np

from soutui.data.sequences import EvalSplit
from soutui.training.cooc import blend_weights

N = 5


def test_blend_weights_scores_every_extra_at_every_weight() -> None:
    targets = np.array([0, 1, 2, 3])
    valid = EvalSplit(np.arange(4), [np.array([t]) for t in targets], targets, "valid")

    def parts(hist: list[np.ndarray], times: object) -> tuple[np.ndarray, list[np.ndarray]]:
        rows = np.arange(len(hist))
        last = np.array([h[-1] for h in hist])
        base = np.tile(np.arange(N, dtype=np.float64) * 0.01, (len(hist), 1))  # item 4 first: no target
        good, bad = np.zeros((len(hist), N)), np.zeros((len(hist), N))
        good[rows, last] = 1.0  # the history item is the target here
        bad[rows, (last - 1) % N] = 1.0  # an item the base ranks below the target (or item 4)
        return base, [good, bad]

    good, bad = blend_weights(parts, valid, (0.0, 1.0))
    # weight 0 is the base alone in both tables: target t is ranked below the 4 - t items above it
    alone = float(np.mean(1.0 / np.log2(4 - targets + 2.0)))
    assert good[0.0] == bad[0.0] == round(alone, 6)
    assert good[1.0] == 1.0  # every target first
    assert bad[1.0] < alone  # the wrong extra pushes one more item above targets 1, 2, 3
