"""Tiny synthetic sequence data with a known answer, shared by the sasrec tests."""

from __future__ import annotations

import numpy as np

from soutui.data.sequences import LeaveOneOut, SequenceData, leave_one_out
from soutui.models.sasrec_recommender import SASRecRecommender
from soutui.training.trainer import LoopTrainer

N_ITEMS = 24


def cyclic_data(n_users: int = 160, seed: int = 0) -> LeaveOneOut:
    """Each user walks the cycle 0 -> 1 -> ... -> 23 -> 0 from a random start: next item = last + 1."""
    rng = np.random.default_rng(seed)
    seqs, tss = [], []
    for _ in range(n_users):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(5, 12))
        seqs.append((start + np.arange(length)) % N_ITEMS)
        tss.append(1_600_000_000 + np.cumsum(rng.integers(0, 5, length)) * 86400)
    data = SequenceData(np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
                        np.array([f"u{u}" for u in range(n_users)], dtype=object), seqs, tss)  # fmt: skip
    return leave_one_out(data)


SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 10, "dropout": 0.1, "emb_dropout": 0.1,
         "batch_size": 32, "lr": 0.01, "progress": False, "seed": 0}  # fmt: skip


def sasrec(**params: object) -> SASRecRecommender:
    """A SASRecRecommender handed the training layer's loop, as every caller fits one."""
    return SASRecRecommender(**params).use_trainer(LoopTrainer(progress=False))
