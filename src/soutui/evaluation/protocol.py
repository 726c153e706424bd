"""Full-ranking evaluation of a recommender over every item in the catalogue.

The one place where ranks are computed, so every model is measured the same way.
Ties are broken pessimistically (a tied item counts as ranked above the target), so
a model that scores everything equally cannot look good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from soutui.data.sequences import EvalSplit
from soutui.evaluation import metrics as M
from soutui.models.base import Recommender

DEFAULT_KS = (5, 10, 20)


@dataclass(frozen=True)
class RankingProtocol:
    """How the ranking was done; printed beside every number."""

    split: str = "leave-one-out"
    candidates: str = "full"  # every item in the catalogue
    exclude_history: bool = False

    def describe(self) -> str:
        hist = "history items EXCLUDED" if self.exclude_history else "history items NOT excluded"
        return f"{self.split}; full ranking over all items; {hist}; pessimistic ties"


def pessimistic_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among all columns; tied items count as above it."""
    t = scores[np.arange(len(targets)), targets][:, None]
    return (scores > t).sum(1) + ((scores == t).sum(1) - 1)


def target_ranks(
    model: Recommender,
    split: EvalSplit,
    exclude_history: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    topk: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """0-based rank of each target among all items, and optionally each user's top-`topk`."""
    ranks = np.empty(len(split), dtype=np.int64)
    tops = np.empty((len(split), topk), dtype=np.int64) if topk else None
    it = range(0, len(split), batch_size)
    for start in tqdm(it, desc=f"rank {split.name}", disable=not progress, unit="batch"):
        hist = split.histories[start : start + batch_size]
        tgt = split.targets[start : start + batch_size]
        times = split.timestamps[start : start + batch_size] if split.timestamps is not None else None
        scores = np.asarray(model.score(hist, times), dtype=np.float64)  # time-aware models read times
        if exclude_history:
            for row, h in enumerate(hist):
                keep = scores[row, tgt[row]]
                scores[row, h] = -np.inf
                scores[row, tgt[row]] = keep  # the target itself is never removed
        ranks[start : start + len(tgt)] = pessimistic_ranks(scores, tgt)
        if tops is not None:
            part = np.argpartition(-scores, topk - 1, axis=1)[:, :topk]
            tops[start : start + len(tgt)] = part
    return ranks, tops


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = M.hr_from_ranks(ranks, k)
        out[f"Recall@{k}"] = M.hr_from_ranks(ranks, k)
        out[f"Precision@{k}"] = M.precision_from_ranks(ranks, k)
        out[f"F1@{k}"] = M.f1_from_ranks(ranks, k)
        out[f"NDCG@{k}"] = M.ndcg_from_ranks(ranks, k)
        out[f"MRR@{k}"] = M.mrr_from_ranks(ranks, k)
        out[f"MAP@{k}"] = M.map_from_ranks(ranks, k)
    return {k: round(v, 6) for k, v in out.items()}


def evaluate_full_ranking(
    model: Recommender,
    split: EvalSplit,
    n_items: int,
    ks: tuple[int, ...] = DEFAULT_KS,
    exclude_history: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """All metrics at each k, plus catalogue coverage of the top-max(k) lists."""
    kmax = max(ks)
    ranks, tops = target_ranks(model, split, exclude_history, progress=progress, topk=kmax)
    out = ranking_metrics(ranks, ks)
    assert tops is not None
    out[f"Coverage@{kmax}"] = round(len(np.unique(tops)) / n_items, 6)
    out["users"] = len(split)
    return out
