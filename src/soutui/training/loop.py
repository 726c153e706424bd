"""The training loop for torch recommenders: epochs, early stopping, checkpoints and resume.

Model-agnostic: it is handed a network whose forward returns (output, loss), a function
that yields an epoch of batches (tuples of numpy arrays passed positionally to forward),
and a `validate()` callback returning the early-stopping metric (validation NDCG@10
under full ranking). Models reach it through soutui.training.trainer.LoopTrainer. Each epoch re-seeds torch and numpy from
(seed, epoch), so resuming from an epoch checkpoint replays exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from soutui.models.fitting import Batch, BatchFn, TrainConfig, pick_device, retain_freed_memory
from soutui.training.distributed import Group, current

if TYPE_CHECKING:
    from soutui.training.dp import PrivateTraining

__all__ = ["Batch", "TrainConfig", "TrainState", "pick_device", "train"]


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights, and what fit() reports."""

    epoch: int = 0  # epochs completed
    best_metric: float = -1.0
    best_epoch: int = -1
    bad_evals: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time spent training (all threads)
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""  # why training ended: patience / epochs / time
    device: str = "cpu"  # where it trained
    threads: int = 0  # torch intra-op threads on CPU (0 = not set)
    valid_seconds: float = 0.0  # longest validation so far (wall s): what the time budget reserves
    privacy: dict[str, Any] | None = None  # DP-SGD runs: achieved epsilon, delta, accountant (training/dp.py)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_epoch(seed: int, epoch: int) -> np.random.Generator:
    torch.manual_seed(seed * 100_003 + epoch)
    return np.random.default_rng(seed * 100_003 + epoch)


def budget_fraction(cfg: TrainConfig, epoch_progress: float, seconds: float, cpu_seconds: float) -> float:
    """How much of the training budget is spent, in [0, 1]: the largest of the epoch,
    wall-clock and CPU-time fractions, so a cosine schedule reaches its floor whichever
    budget ends the run. With a time budget the schedule follows the clock, so a resumed
    run is no longer bit-identical to an uninterrupted one."""
    fracs = [epoch_progress / cfg.epochs] if cfg.epochs > 0 else []
    if cfg.max_minutes > 0:
        fracs.append(seconds / (cfg.max_minutes * 60))
    if cfg.max_cpu_minutes > 0:
        fracs.append(cpu_seconds / (cfg.max_cpu_minutes * 60))
    return min(1.0, max(fracs, default=0.0))


def scheduled_lr(cfg: TrainConfig, step: int, frac: float) -> float:
    """Learning rate at optimizer step `step` with `frac` of the budget spent."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    floor = cfg.min_lr_ratio
    return cfg.lr * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _to_device(batch: Batch, device: torch.device) -> list[torch.Tensor | None]:
    return [None if x is None else torch.from_numpy(x).to(device) for x in batch]


def save_checkpoint(
    path: Path,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    state: TrainState,
    best: dict[str, Any] | None,
    average: AveragedModel | None = None,
) -> None:
    """Atomically write last.pt: weights, optimizer, loop state, the best weights so far and the
    weights' moving average (when kept)."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "last.pt.tmp"
    avg = average.state_dict() if average is not None else None
    torch.save(
        {
            "model": net.state_dict(),
            "optim": opt.state_dict(),
            "state": state.__dict__,
            "best": best,
            "average": avg,
        },
        tmp,
    )
    tmp.replace(path / "last.pt")


def load_checkpoint(
    path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, average: AveragedModel | None = None
) -> tuple[TrainState, dict[str, Any] | None]:
    ck = torch.load(path / "last.pt", map_location="cpu", weights_only=False)
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optim"])
    if average is not None and ck.get("average") is not None:
        average.load_state_dict(ck["average"])
    return TrainState(**ck["state"]), ck["best"]


def _snapshot(net: torch.nn.Module) -> dict[str, Any]:
    """A CPU copy of `net`'s state dict (the best weights kept so far)."""
    return copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})


def _averager(net: torch.nn.Module, cfg: TrainConfig) -> AveragedModel | None:
    """The weights' exponential moving average (`ema_decay` > 0), or None. Its first update copies
    the weights; buffers are not averaged (they are the model's fixed tables)."""
    if cfg.ema_decay <= 0:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)


def _averaged_state(net: torch.nn.Module, average: AveragedModel | None) -> dict[str, Any] | None:
    """The state dict with the averaged parameters (None without an average: keep `net` as is)."""
    if average is None or not int(average.n_averaged):
        return None
    with _averaged_weights(net, average):
        return _snapshot(net)


@contextmanager
def _averaged_weights(net: torch.nn.Module, avg: AveragedModel | None) -> Iterator[None]:
    """Inside: `net` holds the averaged parameters (what is validated and, when best, kept);
    after: its own iterate again, to train on."""
    if avg is None or not int(avg.n_averaged):
        yield
        return
    params = list(net.parameters())
    live = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, a in zip(params, avg.module.parameters(), strict=True):
            p.copy_(a)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, x in zip(params, live, strict=True):
                p.copy_(x)


def _schedule(
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    epochs: float,
    clock: tuple[float, float],
    stop_at: float,
    ranks: Group,
) -> None:
    """Set the scheduled learning rate for optimizer step `step`, `epochs` into the run."""
    wall = time.perf_counter() - clock[0]
    if 0 < stop_at < math.inf:  # the schedule ends where training must stop, not at the budget
        wall *= cfg.max_minutes * 60 / stop_at
    frac = ranks.max(budget_fraction(cfg, epochs, wall, time.process_time() - clock[1]))
    for group in opt.param_groups:  # every rank steps with the same learning rate, though clocks differ
        group["lr"] = scheduled_lr(cfg, step, frac)


def _step(
    net: torch.nn.Module,
    fwd: torch.nn.Module,
    opt: torch.optim.Optimizer,
    part: tuple[Batch, float],
    cfg: TrainConfig,
    device: torch.device,
) -> float:
    """One ordinary optimizer step on this rank's rows of a batch; returns its loss."""
    batch, weight = part
    with _autocast(device):
        _, loss = fwd(*_to_device(batch, device))
    assert loss is not None
    opt.zero_grad(set_to_none=True)
    (loss * weight if weight != 1.0 else loss).backward()  # DDP averages: weight by share of rows
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    return float(loss.detach())


def _run_epoch(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: BatchFn,
    n_batches: int,
    cfg: TrainConfig,
    state: TrainState,
    device: torch.device,
    clock: tuple[float, float],
    stop_at: float = math.inf,
    ranks: Group | None = None,
    private: PrivateTraining | None = None,
    average: AveragedModel | None = None,
) -> tuple[float, bool]:
    """One epoch of optimizer steps (seeded from (seed, epoch)); returns (mean loss, cut short):
    no batch starts unless it should end before `stop_at` seconds on the run's wall clock.
    Under DDP (`ranks`) each rank steps on its rows of every batch and all ranks agree on the cut.
    `average` (the weights' moving average) is updated after every step."""
    ranks = ranks or current()
    fwd = ranks.model(net)  # DistributedDataParallel under torchrun, `net` itself otherwise
    rng = seed_epoch(cfg.seed, state.epoch)
    net.train()
    total, count = 0.0, 0
    started = time.perf_counter()
    bar = tqdm(batches(rng), total=n_batches, desc=f"epoch {state.epoch + 1}", leave=False, file=sys.stderr,
               disable=not (cfg.progress and ranks.is_main))  # fmt: skip
    for b, batch in enumerate(bar):
        now = time.perf_counter()
        if ranks.any(now - clock[0] + (now - started) / max(count, 1) > stop_at):
            bar.close()
            return total / max(count, 1), True
        if private is not None:  # DP-SGD (training/dp.py): stops at its planned step count
            if private.exhausted:
                bar.close()
                return total / max(count, 1), True
            total, count = total + private.step(net, _to_device(batch, device)), count + 1
            if average is not None:  # post-processing of the private iterates: no privacy cost
                average.update_parameters(net)
            continue
        part = ranks.shard(batch)
        if part is None:
            continue
        if cfg.lr_schedule != "constant":
            _schedule(
                opt,
                cfg,
                state.epoch * n_batches + b,
                state.epoch + b / max(n_batches, 1),
                clock,
                stop_at,
                ranks,
            )
        total += _step(net, fwd, opt, part, cfg, device)
        count += 1
        if average is not None:
            average.update_parameters(net)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1), False


def _validate(
    net: torch.nn.Module,
    validate: Callable[[], float],
    cfg: TrainConfig,
    state: TrainState,
    row: dict[str, float],
    best: dict[str, Any] | None,
    average: AveragedModel | None = None,
) -> dict[str, Any] | None:
    """Read the validation metric; returns the best weights so far (patience counted in `state`).
    With a moving average, the averaged weights are what is validated and kept."""
    net.eval()
    t0 = time.perf_counter()
    with _averaged_weights(net, average):
        metric = float(validate())
        state.valid_seconds = max(state.valid_seconds, time.perf_counter() - t0)  # a busy machine slows some
        row["valid"] = round(metric, 6)
        if metric > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_evals = metric, state.epoch, 0
            return _snapshot(net)
    state.bad_evals += 1
    if state.bad_evals >= cfg.patience:
        state.stopped = "patience"
    return best


def _budget_spent(cfg: TrainConfig, state: TrainState, stop_at: float, n_batches: int) -> str:
    """Why the budget ends training after this epoch ('' = keep going); `stop_at`: the wall
    second after which no batch may end (the time budget less what is reserved after it)."""
    batch_s = state.seconds / max(state.epoch * n_batches, 1)  # mean wall seconds a batch so far
    if state.seconds + batch_s > stop_at:
        return "time"
    if cfg.max_cpu_minutes > 0 and state.cpu_seconds > cfg.max_cpu_minutes * 60:
        return "cpu-time"
    return "epochs" if state.epoch >= cfg.epochs else ""


def _time_validation(net: torch.nn.Module, validate: Callable[[], float], state: TrainState) -> None:
    """Time one validation before training: what a time budget reserves for after it."""
    t0 = time.perf_counter()
    net.eval()
    validate()
    state.valid_seconds = time.perf_counter() - t0


def stop_second(cfg: TrainConfig, state: TrainState, spent_s: float, after_validations: float) -> float:
    """The wall second (on the loop's clock) after which no training batch may end, so that
    the loop's last validation, the `after_validations` validation-sized passes the fit runs
    after the loop and the `spent_s` it ran before all fit in `max_minutes` (inf: no budget)."""
    if cfg.max_minutes <= 0:
        return math.inf
    return cfg.max_minutes * 60 - spent_s - (1 + after_validations) * state.valid_seconds


def adamw(net: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; its fused kernel on CPU and CUDA (the same update to ~1e-8, about 10x faster on a
    1M-row item table, where the default's per-step pass over every weight cost ~0.35 s). Under
    DP-SGD the default implementation is kept: Opacus's optimiser wraps it."""
    fused = device.type in ("cpu", "cuda") and not cfg.private
    return torch.optim.AdamW(
        net.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=(0.9, cfg.adam_beta2),
        fused=fused or None,
    )


def _private(
    opt: torch.optim.Optimizer, cfg: TrainConfig, n_batches: int, state: TrainState, group: Group
) -> PrivateTraining | None:
    """DP-SGD for a private config (accounting resumed from a checkpoint's step count), else None."""
    if not cfg.private:
        return None
    if group.world > 1:
        raise ValueError("DP-SGD (dp_epsilon) runs on one process; train it without torchrun")
    from soutui.training.dp import make_private

    return make_private(opt, cfg, n_batches, steps_done=int((state.privacy or {}).get("steps", 0)))


def _count_epoch(state: TrainState, cut: bool, private: PrivateTraining | None) -> None:
    """Count a finished epoch on `state`: cut short by the clock, or by DP-SGD's planned steps."""
    state.epoch += 1
    state.stopped = "time" if cut else ""
    if private is not None:
        state.privacy = private.report()
        state.stopped = "dp_steps" if private.exhausted else state.stopped


def _record_epoch(state: TrainState, row: dict[str, float], clock: tuple[float, float], show: bool) -> None:
    """Stamp the epoch's wall and CPU time (since the fit began) on `state` and its history row."""
    state.seconds = time.perf_counter() - clock[0]
    state.cpu_seconds = time.process_time() - clock[1]
    row["seconds"], row["cpu_seconds"] = round(state.seconds, 1), round(state.cpu_seconds, 1)
    state.history.append(row)
    if show:
        tqdm.write(
            f"epoch {state.epoch}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "epoch"),
            file=sys.stderr,
        )


def _start(
    net: torch.nn.Module,
    cfg: TrainConfig,
    resume_from: Path | None,
    with_optimizer: Callable[[torch.optim.Optimizer], None] | None,
) -> tuple[torch.device, torch.optim.Optimizer, TrainState, dict[str, Any] | None, AveragedModel | None]:
    """The device (threads set), optimizer, loop state, best weights and moving average of a fit:
    fresh, or read from `resume_from`'s last.pt when there is one."""
    device = pick_device(cfg.device)
    retain_freed_memory()  # no page faults for the step's large tensors (models.fitting)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.threads))
    scheduled_lr(cfg, 0, 0.0)  # rejects an unknown schedule before any work
    net.to(device)
    opt = adamw(net, cfg, device)
    if with_optimizer is not None:
        with_optimizer(opt)
    state, best, average = TrainState(), None, _averager(net, cfg)
    if resume_from is not None and (resume_from / "last.pt").exists():
        state, best = load_checkpoint(resume_from, net, opt, average)
        net.to(device)
    return device, opt, state, best, average


def train(
    net: torch.nn.Module,
    batches: BatchFn,
    n_batches: int,
    validate: Callable[[], float] | None,
    cfg: TrainConfig,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    spent_s: float = 0.0,
    after_validations: float = 0.0,
    with_optimizer: Callable[[torch.optim.Optimizer], None] | None = None,
) -> TrainState:
    """Train `net` in place; on return it holds the best-validation weights (with `validate=None`,
    no early stopping: the last epoch's weights are kept).

    `max_minutes` caps the whole fit's wall time: `spent_s` (before the loop) + the loop +
    `after_validations` validation passes the caller runs afterwards (choices made on
    validation). With a budget the loop times one validation before training, and stops
    mid-epoch rather than overrun (that epoch is validated and counted).

    `stop_after_epochs` simulates an interruption (tests): the loop returns after that
    many epochs of this call, leaving last.pt behind for `resume=True`.

    `with_optimizer` is handed the AdamW before the first step (a federated client restores its
    moments from the previous round into it, and reads them back afterwards).
    """
    device, opt, state, best, average = _start(net, cfg, checkpoint_dir if resume else None, with_optimizer)
    group = current()  # only rank 0 writes checkpoints; validation runs on rank 0, its metric broadcast
    validate = group.on_main(validate) if validate is not None else None
    private = _private(opt, cfg, n_batches, state, group)
    state.device, state.threads = str(device), torch.get_num_threads() if device.type == "cpu" else 0
    clock = (time.perf_counter() - state.seconds, time.process_time() - state.cpu_seconds)  # wall, CPU starts
    if cfg.max_minutes > 0 and validate is not None and not state.valid_seconds:
        _time_validation(net, validate, state)
    done_here = 0
    while state.epoch < cfg.epochs and not state.stopped:
        stop_at = stop_second(cfg, state, spent_s, after_validations)
        loss, cut = _run_epoch(
            net, opt, batches, n_batches, cfg, state, device, clock, stop_at, group, private, average
        )
        _count_epoch(state, cut, private)
        row: dict[str, float] = {"epoch": state.epoch, "loss": round(loss, 5)}
        if validate is None:  # keep the current weights (the average, when kept)
            best = _averaged_state(net, average)
        elif state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs or cut:
            best = _validate(net, validate, cfg, state, row, best, average)
        _record_epoch(state, row, clock, show=cfg.progress and group.is_main)
        stop_at = stop_second(cfg, state, spent_s, after_validations)
        state.stopped = state.stopped or group.stop_reason(_budget_spent(cfg, state, stop_at, n_batches))
        if checkpoint_dir is not None and group.is_main:
            save_checkpoint(checkpoint_dir, net, opt, state, best, average)
        done_here += 1
        if stop_after_epochs is not None and done_here >= stop_after_epochs and not state.stopped:
            return state
    group.release(net)
    if best is not None:
        net.load_state_dict(best)
    net.eval()
    return state
