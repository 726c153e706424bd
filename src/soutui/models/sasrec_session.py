"""SASRec's optional session head: session-kNN's votes added to the network's scores.

score = network (+ co-occurrence head) + weight x session-kNN (soutui.models.sknn; its best item
scores 1). The co-occurrence head adds item-to-item evidence; this one adds whole sessions that
went the same way, which the network and the item pairs both miss on anonymous-session data
(Diginetica: docs/sasrec.md, "A session head"). Off unless `session_neighbors > 0`. The weight is
chosen on validation NDCG@10 after the co-occurrence head's (0, the head off, is always tried and
wins ties), and the head is fitted on the training sequences only, like the co-occurrence head.

Numpy and scipy only: the torch-free served scorer (sasrec_onnx.OnnxScorer) loads and adds it
exactly as the PyTorch model does, from the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.models.fitting import PartsFn
from soutui.models.sknn import SessionKNN

DIR = "session_head"  # beside the checkpoint's (or the ONNX export's) own files
NOTE = "session head weight chosen on VALIDATION NDCG@10 after the co-occurrence head's (0 = off)"
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)  # as the co-occurrence head's


@dataclass
class SessionHead:
    """A fitted session-kNN and the weight its scores are added with."""

    knn: SessionKNN
    weight: float = 0.0
    valid: dict[float, float] = field(default_factory=dict)  # weight -> validation NDCG@10, when chosen

    def add(self, scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """`scores` (B, I) plus this head's weighted votes (unchanged at weight 0)."""
        if self.weight == 0.0:
            return scores
        return (scores + self.weight * self.knn.score(histories)).astype(scores.dtype)

    def refit(self, data: SequenceData) -> SessionHead:
        """The same head (parameters, weight) fitted on `data`: nothing chosen again."""
        return SessionHead(SessionKNN(**self.knn.params()).fit(data), self.weight, dict(self.valid))

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {"weight": self.weight, "params": self.knn.params(), "valid_ndcg10": self.valid,
                                  "note": NOTE}  # fmt: skip
        if self.valid and self.weight == max(self.valid) > 0:
            out["warning"] = (f"session head weight {self.weight:g} is the largest tried: a larger one may "
                              "score better on validation")  # fmt: skip
        return out

    def save(self, path: str | Path) -> None:
        out = Path(path) / DIR
        self.knn.save(out)
        (out / "head.json").write_text(json.dumps({"weight": self.weight, "valid": list(self.valid.items())}))

    @classmethod
    def load(cls, path: str | Path) -> SessionHead | None:
        """The head saved under `path`, or None when the model has none."""
        d = Path(path) / DIR
        if not (d / "head.json").is_file():
            return None
        meta = json.loads((d / "head.json").read_text())
        return cls(SessionKNN.load(d), float(meta["weight"]), {float(w): v for w, v in meta.get("valid", [])})


def choose_session_head(
    knn: SessionKNN,
    base: Callable[[list[np.ndarray], list[np.ndarray] | None], np.ndarray],
    blend: Callable[[PartsFn, EvalSplit, Sequence[float]], list[dict[float, float]]],
    valid: EvalSplit,
    weights: Sequence[float] = WEIGHTS,
) -> SessionHead:
    """Choose the weight of `knn` (session-kNN fitted on the training sequences) on `valid` against
    `base` (the model's scores without it): the best validation NDCG@10, ties to the smaller weight;
    0 is always tried."""

    def parts(hist: list[np.ndarray], times: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        return base(hist, times).astype(np.float64), [knn.score(hist)]

    (table,) = blend(parts, valid, tuple(sorted({0.0, *map(float, weights)})))
    best = max(table, key=lambda w: (table[w], -w))
    return SessionHead(knn, float(best), table)
