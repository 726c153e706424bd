"""Data-parallel training with PyTorch DDP: the process group, batch sharding and agreed decisions.

`soutui train --nproc N` re-runs itself under torchrun (torch.distributed.run): gloo on CPU,
NCCL on GPU. Every rank runs the same fit: the same seeded batch generator yields the same
global batch everywhere, and each rank keeps its rows `rank::world` of it (DistributedSampler-
style sharding of users, one batch at a time). DistributedDataParallel averages the gradients,
so a global batch of B rows trains as it would in one process (each rank's loss is weighted by
its share of the rows; exact when a batch's rows carry equal numbers of labelled positions).

What must never differ between ranks is agreed on, so no rank stops alone (a rank that left
early would leave the others waiting forever in the next all-reduce):
- the mid-epoch time-budget stop: one all-reduce (MAX) of a flag per step;
- the end-of-epoch stop reason (time, CPU time, epochs): all-reduce of a code;
- the validation metric (early stopping, best weights): computed on rank 0, broadcast.

Only rank 0 writes checkpoints, records and bundles. Without a process group `current()` is a
one-process group whose every method is the identity, so the loop has one code path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from soutui.models.fitting import Batch

if TYPE_CHECKING:
    import torch

# the end-of-epoch stop reasons, weakest first: the group stops for the strongest any rank has
STOP_CODES = ("", "epochs", "cpu-time", "time", "patience")


@dataclass
class Group:
    """The ranks training one model together (world 1 = no process group)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    _wrapped: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, batch: Batch) -> tuple[Batch, float] | None:
        """This rank's rows of a global batch and its loss weight (rows x world / global rows);
        None when the batch has fewer rows than ranks (every rank skips it alike)."""
        if not self.active:
            return batch, 1.0
        rows = _rows(batch)
        if rows < self.world:
            return None
        mine = tuple(None if x is None else np.ascontiguousarray(x[self.rank :: self.world]) for x in batch)
        return mine, _rows(mine) * self.world / rows

    def model(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` wrapped in DistributedDataParallel (once per net); `net` itself in one process.
        Buffers are synced at the start, not each step: they are built alike on every rank from the
        same data (SASRec's logQ and co-occurrence tables would cost megabytes a step)."""
        if not self.active:
            return net
        key = id(net)
        if key not in self._wrapped:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [net_device(net).index] if net_device(net).type == "cuda" else None
            # find_unused_parameters: e.g. SASRec's time modules get no gradient without timestamps
            self._wrapped[key] = DDP(
                net, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=True
            )
        return self._wrapped[key]  # type: ignore[no-any-return]

    def release(self, net: torch.nn.Module) -> None:
        """Forget the DDP wrapper of `net` once its training ends."""
        self._wrapped.pop(id(net), None)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (one tiny all-reduce)."""
        if not self.active:
            return flag
        return self._reduce_max(float(flag)) > 0

    def max(self, value: float) -> float:
        """The largest `value` of any rank, on every rank (e.g. the budget fraction a cosine
        schedule reads: ranks' clocks differ, their learning rates must not)."""
        return self._reduce_max(value) if self.active else value

    def stop_reason(self, reason: str) -> str:
        """The strongest stop reason of any rank (see STOP_CODES), the same on every rank."""
        if not self.active:
            return reason
        return STOP_CODES[int(self._reduce_max(float(STOP_CODES.index(reason))))]

    def on_main(self, fn: Callable[[], float]) -> Callable[[], float]:
        """`fn` run on rank 0 only, its value broadcast to every rank (validation)."""
        if not self.active:
            return fn

        def agreed() -> float:
            import torch
            import torch.distributed as dist

            value = torch.tensor([fn() if self.is_main else 0.0], dtype=torch.float64, device=self.device)
            dist.broadcast(value, src=0)
            return float(value.item())

        return agreed

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. imports a dataset, fills the embedding cache), then the
        others, so they never race for the store's write lock."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def _reduce_max(self, x: float) -> float:
        import torch
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())


_SINGLE = Group()
_current: Group | None = None


def current() -> Group:
    """The group this process trains in (the one-process group unless `init_from_env` ran)."""
    return _current or _SINGLE


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ


def init_from_env() -> Group:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...):
    NCCL with one GPU per local rank where CUDA is available, gloo on CPU otherwise."""
    global _current
    import torch
    import torch.distributed as dist

    if _current is not None:
        return _current
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    _current = Group(dist.get_rank(), dist.get_world_size(), f"cuda:{local}" if cuda else "cpu")
    return _current


def shutdown() -> None:
    global _current
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _current = None


def net_device(net: torch.nn.Module) -> torch.device:
    import torch

    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _rows(batch: Batch) -> int:
    for x in batch:
        if x is not None:
            return int(x.shape[0])
    return 0


def torchrun_command(nproc: int, module_args: list[str]) -> list[str]:
    """The torchrun command line that runs `python -m soutui.cli <module_args>` in `nproc` local
    processes (one machine: --standalone picks a free rendezvous port)."""
    import sys

    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "soutui.cli", *module_args]  # fmt: skip
