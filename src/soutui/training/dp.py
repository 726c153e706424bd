"""Differentially private training (DP-SGD through Opacus) with ONE USER as the privacy unit.

What makes the guarantee per user: the models' private batch functions (models.fitting.
poisson_user_batches) hold one training example per user (SASRec: the user's sequence;
the MLP: one prefix -> next-item pair of the user) and draw every user independently with
probability q = 1 / steps-per-epoch at every step (Poisson sampling, what Opacus's
accountant assumes). Each row's gradient is clipped to `dp_clip`, so one user moves a step
by at most that norm, and Gaussian noise of `noise_multiplier x dp_clip` is added.

Why per-sample gradients come from torch.func and not Opacus's module hooks: Opacus's hooks
read the batch dimension off every layer's input, but SASRec builds its item table once per
step (the embedding and LayerNorm run over all items, not over users) and scores against it,
so the hooks would see items where they expect users. `vmap(grad(...))` over the batch rows
gives the exact per-user gradient of every parameter, item table included; Opacus's own
DPOptimizer then clips, adds noise and averages, and its RDP accountant tracks epsilon.
Nothing is left out and no layer needs swapping (SASRec's attention is plain Linear and
matmul ops, not nn.MultiheadAttention).

The noise multiplier is solved (opacus get_noise_multiplier) for the target epsilon over
the PLANNED number of steps (`dp_steps`, else epochs x steps per epoch); training stops at
that step. A time budget may stop it earlier: the achieved epsilon is then read off the
accountant for the steps actually taken (lower than the target) and recorded as such.

A model may spend part of the same users' budget before DP-SGD (SASRec's private co-occurrence
head, models/private_cooc.py): `dp_spent` holds those releases' RDP history, the noise multiplier
is then solved so that the releases and the planned steps TOGETHER meet `dp_epsilon` (one
accountant, curves summed), and the recorded epsilon is that total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from torch.func import functional_call, grad, vmap

from soutui.models.fitting import TrainConfig
from soutui.models.private_cooc import ACCOUNTANT, rdp_epsilon


def planned_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps the noise is calibrated for (and training stops at)."""
    return int(cfg.dp_steps) if cfg.dp_steps > 0 else max(1, cfg.epochs * steps_per_epoch)


def per_sample_grads(net: torch.nn.Module, batch: list[torch.Tensor | None]) -> tuple[dict[str, Any], float]:
    """Per-row gradients {name: (B, *shape)} of each row's own loss, and the batch's mean loss.

    Each row is run as a batch of one under vmap, so a row's gradient depends on that row only
    (dropout draws differ per row)."""
    params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    buffers = dict(net.named_buffers())

    def row_loss(p: dict[str, torch.Tensor], *row: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        args = tuple(None if x is None else x.unsqueeze(0) for x in row)
        _, loss = functional_call(net, (p, buffers), args)
        return loss, loss.detach()

    dims = tuple(None if x is None else 0 for x in batch)
    grads, losses = vmap(grad(row_loss, has_aux=True), in_dims=(None, *dims), randomness="different")(
        params, *batch
    )
    return grads, float(losses.mean()) if len(losses) else 0.0


@dataclass
class PrivateTraining:
    """One DP-SGD run: wraps the loop's optimizer, counts steps, reports the privacy spent."""

    optimizer: DPOptimizer
    accountant: RDPAccountant
    noise_multiplier: float
    sample_rate: float
    planned: int
    cfg: TrainConfig
    steps: int = 0

    @property
    def exhausted(self) -> bool:
        return self.steps >= self.planned

    def step(self, net: torch.nn.Module, batch: list[torch.Tensor | None]) -> float:
        """One private step on a Poisson batch (which may be empty); returns the batch's mean loss."""
        params = [p for p in net.parameters() if p.requires_grad]
        rows = next((len(x) for x in batch if x is not None), 0)
        if rows:
            grads, loss = per_sample_grads(net, batch)
            for name, p in ((n, p) for n, p in net.named_parameters() if p.requires_grad):
                p.grad_sample = grads[name]  # type: ignore[attr-defined]  # what DPOptimizer reads
        else:  # nobody drawn: the step still adds noise and is still accounted
            loss = 0.0
            for p in params:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)  # type: ignore[attr-defined]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return loss

    def report(self) -> dict[str, Any]:
        """The record's "privacy" entry: achieved epsilon for the steps taken (composed with the releases
        in `dp_spent`, when any), and how it was set."""
        spent, delta = self.cfg.dp_spent, self.cfg.dp_delta
        eps = float(self.accountant.get_epsilon(delta=delta)) if self.steps or spent else 0.0
        own = [(self.noise_multiplier, self.sample_rate, self.steps)] if self.steps else []
        composed = {"history": [list(h) for h in self.accountant.history],
                    "dp_sgd_epsilon": round(rdp_epsilon(own, delta), 4) if own else 0.0} if spent else {}  # fmt: skip
        return {
            "epsilon": round(eps, 4),
            "delta": self.cfg.dp_delta,
            "accountant": ACCOUNTANT,
            "unit": "user",
            "target_epsilon": self.cfg.dp_epsilon,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "planned_steps": self.planned,
            "max_grad_norm": self.cfg.dp_clip,
            "mechanism": "DP-SGD (Opacus DPOptimizer), Poisson sampling of users, per-user clipping",
            **composed,
        }


def make_private(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, steps_done: int = 0
) -> PrivateTraining:
    """Wrap `opt` for DP-SGD with noise calibrated to (dp_epsilon, dp_delta) over the planned steps.

    q = 1 / steps_per_epoch: the models' private batches draw each user with that probability,
    so an "epoch" is one expected pass over the users. `steps_done` resumes the accounting."""
    if not (0 < cfg.dp_epsilon < math.inf) or not (0 < cfg.dp_delta < 1) or cfg.dp_clip <= 0:
        raise ValueError(
            f"DP-SGD needs 0 < dp_epsilon < inf, 0 < dp_delta < 1 and dp_clip > 0 "
            f"(got {cfg.dp_epsilon}, {cfg.dp_delta}, {cfg.dp_clip})"
        )
    q = 1.0 / max(1, steps_per_epoch)  # expected batch n / steps_per_epoch ~ batch_size
    planned = planned_steps(cfg, steps_per_epoch)
    sigma = noise_for(cfg, q, planned)
    dp_opt = DPOptimizer(
        opt, noise_multiplier=sigma, max_grad_norm=cfg.dp_clip,
        expected_batch_size=max(1, cfg.batch_size), loss_reduction="mean",
    )  # fmt: skip
    acc = RDPAccountant()
    dp_opt.attach_step_hook(acc.get_optimizer_hook_fn(sample_rate=q))
    acc.history = [*spent_history(cfg), *([(sigma, q, steps_done)] if steps_done else [])]
    return PrivateTraining(dp_opt, acc, float(sigma), q, planned, cfg, steps=steps_done)


def noise_for(cfg: TrainConfig, q: float, steps: int) -> float:
    """DP-SGD's noise multiplier: Opacus's for `dp_epsilon` over `steps`, or, after the releases in
    `dp_spent`, the smallest (to 0.1 %) whose steps composed with them still meet `dp_epsilon`."""
    if not cfg.dp_spent:
        return float(get_noise_multiplier(target_epsilon=cfg.dp_epsilon, target_delta=cfg.dp_delta, sample_rate=q,
                                          steps=steps, accountant=ACCOUNTANT))  # fmt: skip
    spent = spent_history(cfg)
    before = rdp_epsilon(spent, cfg.dp_delta)
    if before >= cfg.dp_epsilon:
        raise ValueError(
            f"the releases made before DP-SGD already spend epsilon {before:.3f} of dp_epsilon {cfg.dp_epsilon}: "
            "give the private head a smaller share (dp_head) or raise dp_epsilon"
        )
    lo, hi = 0.01, 1.0
    while rdp_epsilon([*spent, (hi, q, steps)], cfg.dp_delta) > cfg.dp_epsilon:
        lo, hi = hi, hi * 2
    while hi - lo > 1e-3 * hi:  # the total falls as the noise grows: keep `hi` on the safe side
        mid = (lo + hi) / 2
        lo, hi = (
            (mid, hi) if rdp_epsilon([*spent, (mid, q, steps)], cfg.dp_delta) > cfg.dp_epsilon else (lo, mid)
        )
    return hi


def spent_history(cfg: TrainConfig) -> list[tuple[float, float, int]]:
    """`dp_spent` as the accountant's history entries (a config read from JSON holds lists)."""
    return [(float(s), float(r), int(t)) for s, r, t in cfg.dp_spent]
