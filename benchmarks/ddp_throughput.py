"""Training throughput with PyTorch DDP: interactions/s on Amazon Beauty with 1 and N processes.

Protocol: SASRec (d = 64, 2 blocks, L = 50 unless set, full cross-entropy over all items) on
the Beauty leave-one-out training split; each run is launched through torchrun exactly as
`soutui train --nproc N` does (gloo on CPU, NCCL + bf16 autocast on CUDA), with the same
GLOBAL batch (batch_size rows split across processes) and `--threads` torch threads per
process. Each run trains for a wall-clock budget (`--seconds`, agreed across ranks); the
first `--warmup` steps are not timed. Figures: labelled positions (= training interactions)
per second and sequences (rows) per second, summed over processes (rank 0 counts the global
batch). Titles are not embedded (the network is the same with or without them). The machine
and its load are printed with every figure: on a shared machine they are lower bounds.

    .venv/bin/python benchmarks/ddp_throughput.py [--nprocs 1,2] [--seconds 60] [--threads 1] [--json]
    .venv/bin/python benchmarks/ddp_throughput.py --device cuda --max-len 200 --nprocs 1   # the GPU form
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARAMS: dict[str, Any] = {"d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "loss": "full_ce",
                          "batch_size": 256, "cooc_neighbors": 0, "cold_item_reset": False, "progress": False,
                          "patience": 1000, "epochs": 1000}  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    """One torchrun rank: fit SASRec on Beauty for the budget; rank 0 writes the counts."""
    import numpy as np
    import torch

    from soutui.training import distributed
    from soutui.training.pipeline import build_model, prepare
    from soutui.training.trainer import LoopTrainer

    torch.set_num_threads(args.threads)
    group = distributed.init_from_env()
    with group.main_first():
        prep = prepare(args.dataset, encoder="none", progress=False)
    counts = {
        "rows": 0,
        "positions": 0,
        "steps": 0,
        "t0": 0.0,
        "t1": 0.0,
        "prev_rows": 0,
        "prev_positions": 0,
    }

    class Counting(LoopTrainer):
        def train(self, model, net, batches, n_batches, cfg, valid, **kw):  # type: ignore[no-untyped-def]
            def counted(rng: np.random.Generator):  # type: ignore[no-untyped-def]
                for batch in batches(rng):  # the global batch, before each rank takes its rows
                    counts["steps"] += 1
                    if counts["steps"] == args.warmup + 1:
                        counts["t0"] = time.perf_counter()  # timing starts once the warm-up steps are done
                    elif counts["steps"] > args.warmup + 1:  # asking for a batch = the previous one is done
                        counts["rows"] += counts["prev_rows"]
                        counts["positions"] += counts["prev_positions"]
                        counts["t1"] = time.perf_counter()
                    counts["prev_rows"], counts["prev_positions"] = len(batch[0]), int((batch[1] > 0).sum())
                    yield batch

            return super().train(model, net, counted, n_batches, cfg, valid, **kw)

    params = {**PARAMS, "max_len": args.max_len, "threads": args.threads, "device": args.device,
              "max_minutes": args.seconds / 60}  # fmt: skip
    model = build_model("sasrec", params, Counting(progress=False))
    model.fit(prep.split.train, None)
    if group.is_main:
        seconds = counts["t1"] - counts["t0"]
        out = {"processes": group.world, "threads_per_process": args.threads, "device": args.device,
               "timed_steps": counts["steps"] - args.warmup - 2, "seconds": round(seconds, 2),
               "interactions_per_s": round(counts["positions"] / max(seconds, 1e-9), 1),
               "sequences_per_s": round(counts["rows"] / max(seconds, 1e-9), 1),
               "items": prep.split.train.n_items, "params": {k: params[k] for k in ("d_model", "n_layers", "max_len",
               "loss", "batch_size")}}  # fmt: skip
        Path(args.out).write_text(json.dumps(out))
    distributed.shutdown()


def launch(nproc: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           __file__, "--worker", "--out", str(out), "--dataset", args.dataset, "--seconds", str(args.seconds),
           "--threads", str(args.threads), "--device", args.device, "--max-len", str(args.max_len),
           "--warmup", str(args.warmup)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    subprocess.run(cmd, env=env, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    result["loadavg_before"] = " ".join(load_before)
    result["loadavg_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nprocs", default="1,2", help="process counts to compare (default 1,2)")
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--seconds", type=float, default=60.0, help="training budget per run (wall s)")
    ap.add_argument("--warmup", type=int, default=5, help="steps not timed at the start of each run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (NCCL, bf16 autocast)")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.nprocs.split(",")]:
            runs.append(launch(n, args, Path(tmp) / f"n{n}.json"))
            print(f"{n} process(es): {runs[-1]['interactions_per_s']:,.0f} interactions/s, "
                  f"{runs[-1]['sequences_per_s']:,.0f} sequences/s ({runs[-1]['timed_steps']} steps, "
                  f"load {runs[-1]['loadavg_before']})", file=sys.stderr)  # fmt: skip
    base = runs[0]["interactions_per_s"]
    for r in runs:
        r["speedup_vs_first"] = round(r["interactions_per_s"] / max(base, 1e-9), 2)
    report = {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "cpus": os.cpu_count(), "runs": runs}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for r in runs:
            print(f"{r['processes']} x {r['threads_per_process']} thread(s) on {r['device']}: "
                  f"{r['interactions_per_s']:,.0f} interactions/s, {r['sequences_per_s']:,.0f} sequences/s, "
                  f"x{r['speedup_vs_first']} (load {r['loadavg_before']} -> {r['loadavg_after']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
