"""One SASRec sampled-softmax training step at catalogue scale: the whole item table encoded vs only its used rows.

The 'full' step is the computation before (every item row through the item encoder, then the
loss over the target and the negatives); 'rows' is SASRec.forward now (torch.unique of the
histories, targets and negatives, only those rows encoded). Both draw the same negatives and
give the same loss (tests/models/test_sampled_softmax_rows.py); this measures their CPU time
(process time, so a loaded machine stretches the wall clock, not this figure) and peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampled_rows_step.py --items 1000000 --steps 3 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable

import torch

from soutui.models.fitting import TrainConfig
from soutui.models.sasrec import SASRec, SASRecConfig
from soutui.training.loop import adamw


def old_step(net: SASRec, seq: torch.Tensor, targets: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    neg = torch.multinomial(net.logq.exp(), net.cfg.n_negatives, replacement=True)
    table = net.item_table()
    h = net.encode(seq, ts, table)
    rows, cols = torch.nonzero(targets > 0, as_tuple=True)
    y = targets[rows, cols]
    return net._sampled_loss(seq, rows, cols, h[rows, cols] * net.scale, y, neg, table[y], table[neg])[1]


def new_step(net: SASRec, seq: torch.Tensor, targets: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    loss = net(seq, targets, ts)[1]
    assert loss is not None
    return loss


def timed(step: Callable[..., torch.Tensor], net: SASRec, opt: torch.optim.Optimizer, batch: tuple, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.process_time()
        loss = step(net, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.append(time.process_time() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--negatives", type=int, default=1024)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--variants", default="rows,full", help="rows (the step now), full (whole table, before)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    steps = {"rows": new_step, "full": old_step}
    if not args.variants or set(args.variants.split(",")) - set(steps):
        ap.error(f"--variants takes a comma list of {sorted(steps)}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    T = args.max_len
    cfg = SASRecConfig(n_items=args.items, max_len=T, d_model=64, n_layers=2, n_heads=2,
                       loss="sampled_softmax", n_negatives=args.negatives, cooc_neighbors=0)  # fmt: skip
    net = SASRec(cfg).train()
    pop = torch.rand(args.items + 1) ** 4 + 1e-6
    pop[0] = 0
    net.logq.copy_((pop / pop.sum()).log())
    opt = adamw(net, TrainConfig(lr=1e-3), torch.device("cpu"))  # the training loop's optimiser
    seq = torch.multinomial(pop, args.batch * (T + 1), replacement=True).view(args.batch, T + 1)
    seq[: args.batch // 2, : (2 * T) // 5] = 0  # half the rows shorter than L
    targets = seq[:, 1:].clone()
    seq = seq[:, :-1].clone()
    targets[seq == 0] = 0
    ts = torch.cumsum(torch.rand(args.batch, T), 1)
    ts[seq == 0] = -1.0
    batch = (seq, targets, ts)
    rows_used = int(torch.unique(torch.cat([seq.flatten(), targets.flatten()])).numel()) + args.negatives
    res = {"items": args.items, "batch": args.batch, "max_len": T, "d_model": 64, "negatives": args.negatives,
           "rows_used_about": rows_used, "threads": 1, "load_before": open("/proc/loadavg").read().split()[0]}  # fmt: skip
    timed(new_step, net, opt, batch, 1)  # warm-up (allocations, AdamW state)
    for name in args.variants.split(","):
        step = steps[name]
        cpu = timed(step, net, opt, batch, args.steps)
        res[f"{name}_cpu_s_median"] = round(statistics.median(cpu), 3)
        res[f"{name}_cpu_s"] = [round(c, 3) for c in cpu]
    res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res) if args.json else res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
