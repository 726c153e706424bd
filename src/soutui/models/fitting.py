"""Types a trainable (torch) model shares with the training layer: settings, batches, outcomes.

Why a protocol and not an import: models sit below training and evaluation, yet a
neural model needs an epoch loop (early stopping, checkpoints, budgets) and a
validation metric (the evaluation protocol's full-ranking NDCG@10). The model says
what it needs (base.Trainer); `soutui.training.trainer.LoopTrainer` implements it and is
injected with `Recommender.use_trainer`. Models never import training/ or evaluation/,
and there is exactly one epoch loop (training/loop.py).

Why no default trainer: a default would need models/ to import training/ (an upward
import, hidden or not) or a registration side effect that works only when some other
module happened to be imported first. A torch model fitted without a trainer instead
fails at once with the one line that fixes it. This module stays torch-free.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from soutui.config import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# One batch: numpy arrays (or None) passed positionally to the network's forward, which
# returns (output, loss). SASRec: (seq, targets, ts); the MLP: (hist, mask, counts, cand).
Batch = tuple[np.ndarray | None, ...]
BatchFn = Callable[[np.random.Generator], Iterator[Batch]]  # one epoch of batches from a seeded rng
# (histories, timestamps) -> (base scores (B, I), candidate extras, each (B, I)): blended as base + w * extra
PartsFn = Callable[[list[np.ndarray], list[np.ndarray] | None], tuple[np.ndarray, Sequence[np.ndarray]]]


@dataclass
class TrainConfig:
    """Optimisation settings (the model's own hyper-parameters live in its config)."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 2e-3
    # cosine decays to min_lr_ratio x lr over the budget (epochs, wall or CPU time)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0  # linear warm-up from 0 (cosine schedule)
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    adam_beta2: float = 0.98  # AdamW second-moment decay
    grad_clip: float = 5.0  # max gradient norm; 0 = no clipping
    # exponential moving average of the weights (Polyak averaging), validated and kept in place
    # of the raw iterate; 0 = off, else the per-step decay (0.999 averages ~1,000 steps)
    ema_decay: float = 0.0
    patience: int = 8  # validations without improvement before stopping
    eval_every: int = 1  # epochs between validations
    seed: int = 0
    max_minutes: float = 0.0  # wall-clock budget for training; 0 = unlimited
    max_cpu_minutes: float = 0.0  # CPU-time budget (fair on a shared machine); 0 = unlimited
    threads: int = 1  # torch intra-op threads on CPU
    device: str = "auto"  # auto = cuda when available, else cpu
    progress: bool = True
    # differential privacy (DP-SGD, one user = one privacy unit; see soutui.training.dp)
    dp_epsilon: float = 0.0  # target epsilon; 0 or inf = not private
    dp_delta: float = 1e-5  # keep below 1 / number of users
    dp_clip: float = 1.0  # per-user gradient norm bound
    dp_steps: int = 0  # planned optimizer steps the noise is calibrated for (0 = epochs x steps/epoch)
    # RDP history (noise multiplier, sample rate, steps) of releases the MODEL made on the same users
    # before DP-SGD (SASRec's private head sets it; leave empty): dp_epsilon is then their total
    dp_spent: tuple[tuple[float, float, int], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.dp_epsilon < 0 or not 0 < self.dp_delta < 1 or self.dp_clip <= 0 or self.dp_steps < 0:
            raise ConfigError(
                "dp_epsilon must be >= 0 (0 or inf = not private), 0 < dp_delta < 1, dp_clip > 0, dp_steps >= 0; "
                f"got {self.dp_epsilon}, {self.dp_delta}, {self.dp_clip}, {self.dp_steps}"
            )

    @property
    def private(self) -> bool:
        """Whether this run trains with DP-SGD (a finite, positive target epsilon)."""
        return 0 < self.dp_epsilon < math.inf


class TrainOutcome(Protocol):
    """What the loop reports back (training.loop.TrainState satisfies it)."""

    epoch: int
    best_metric: float
    stopped: str  # why training ended ('' = interrupted on purpose, see stop_after_epochs)

    def as_dict(self) -> dict[str, Any]: ...


def pick_device(name: str) -> torch.device:
    """'auto' = cuda when available, else cpu; a cuda request without CUDA is a clear error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=cpu or auto")
    return torch.device(name)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@functools.cache  # once per process
def retain_freed_memory() -> bool:
    """Keep freed memory in the process instead of handing it back to the kernel (glibc only).

    A training step allocates and frees the same large tensors every time (full-softmax logits
    are batch x length x items floats: 620 MB on Beauty). glibc serves each one with a fresh
    mmap and unmaps it on free, so every step pays page faults to zero the memory again: on
    2 cores about 30 % of a training process's CPU time went to the kernel. With mmap off and no trimming, the
    heap keeps the freed blocks and the next step reuses them (measured in docs/sasrec.md:
    epochs 1.6-1.9x faster; peak memory +8 %). Same results, bit for bit: only where memory
    comes from changes. Process-wide and one-way, so only batch jobs (training, evaluation)
    call it; `SOUTUI_RETAIN_FREED_MEMORY=0` turns it off. Returns whether it is in effect."""
    on = os.environ.get("SOUTUI_RETAIN_FREED_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc"
    if on:
        try:
            libc = ctypes.CDLL(None)
            on = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):
            on = False
        log.debug("retain freed memory (glibc mallopt): %s", on)
    return on


def poisson_user_batches(n_users: int, batch_size: int, make: Callable[[np.ndarray, np.random.Generator], Batch]
                         ) -> tuple[BatchFn, int]:  # fmt: skip
    """Private batches: each step draws every user independently with q = 1 / steps (Poisson
    sampling, as DP-SGD's accountant assumes), and `make(users, rng)` builds ONE row per drawn
    user. Returns (one epoch = steps_per_epoch such steps, steps_per_epoch); the expected batch
    is n_users / steps_per_epoch <= batch_size. A step may draw nobody (an empty batch)."""
    steps = max(1, math.ceil(n_users / max(1, batch_size)))

    def gen(rng: np.random.Generator) -> Iterator[Batch]:
        for _ in range(steps):
            yield make(np.flatnonzero(rng.random(n_users) < 1.0 / steps), rng)

    return gen, steps
