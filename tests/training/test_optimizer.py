"""The loop's AdamW: the fused kernel (the fast path) against the default implementation (the reference)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from soutui.models.fitting import TrainConfig
from soutui.training.loop import adamw


def _run(opt_factory: Callable[[torch.nn.Module], torch.optim.Optimizer], steps: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(5000, 16), torch.nn.Linear(16, 3))
    opt = opt_factory(net)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, 5000, (64,), generator=g)  # a sparse-looking batch: most rows get no gradient
        loss = net(idx).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_fused_adamw_on_cpu_gives_the_default_update() -> None:
    cfg = TrainConfig(lr=1e-2, weight_decay=0.05)
    cpu = torch.device("cpu")
    fused = _run(lambda net: adamw(net, cfg, cpu))
    assert adamw(torch.nn.Linear(2, 2), cfg, cpu).defaults["fused"] is True
    reference = _run(
        lambda net: torch.optim.AdamW(
            net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2), foreach=False
        )
    )
    untouched = _run(lambda net: torch.optim.SGD(net.parameters(), lr=0.0))
    assert not torch.allclose(reference, untouched)  # the steps moved the weights
    torch.testing.assert_close(fused, reference, rtol=1e-6, atol=1e-7)


def test_private_training_keeps_the_default_adamw() -> None:
    cfg = TrainConfig(dp_epsilon=4.0, dp_delta=1e-5)
    assert not adamw(torch.nn.Linear(2, 2), cfg, torch.device("cpu")).defaults["fused"]
