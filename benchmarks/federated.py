"""Federated SASRec (Flower) against centralised SASRec under the same total compute (issue 12 §3).

Same total compute: `--epochs E` passes over all users. The centralised model trains E epochs; a
federated run with L local epochs a round trains E / L rounds, so every client's users are seen E
times either way (no early stopping either side; co-occurrence head and cold-item reset off on both
sides, as federated training needs). Each setting (centralised, and federated with each N) trains
once per learning rate in `--lrs` (`--central-lrs` for the centralised side, default the same) and,
federated, once per value in `--local-epochs`; per seed it keeps the run with the best validation
NDCG@10, never the test. `--seeds` repeats everything per seed (the seed sets the initial weights,
the batch order and the partition of users into clients); the summary gives the chosen runs' test
NDCG@10 as mean +- sd over seeds, and the ratio to the centralised mean. Test: leave-one-out, full
ranking over all items, pessimistic ties, all test users. Bytes per round: the serialized
parameter tensors sent up by all clients plus the global model sent down to each.

    .venv/bin/python benchmarks/federated.py --clients 4,16 --epochs 40 --lrs 0.002,0.004 --jobs 2 --json
    .venv/bin/python benchmarks/federated.py --rows run1.err run2.err --json   # summary of earlier runs

Every run prints its row as one JSON line on stderr; `--rows` rebuilds the summary from such lines
(runs of several invocations together) without training. `--rounds` is the old name of `--epochs` (1 local epoch).

`--jobs` trains that many runs at once, each a process with one torch thread (the seconds are then
measured under that load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from seeds import mean_sd, parse_seeds

from soutui.cli.common import print_table
from soutui.training.federated import FED_PARAMS, STRATEGIES, FederatedConfig, run_federated
from soutui.training.pipeline import Prepared, build_model, evaluate_splits, prepare

SMALL = {
    "d_model": 32,
    "n_heads": 2,
    "n_layers": 2,
    "max_len": 20,
    "batch_size": 128,
    "lr": 2e-3,
    "threads": 1,
}
_PREP: dict[tuple[str, str], Prepared] = {}


def _prepared(dataset: str, encoder: str) -> Prepared:
    if (dataset, encoder) not in _PREP:  # once per worker process
        _PREP[dataset, encoder] = prepare(dataset, encoder=encoder, progress=False)
    return _PREP[dataset, encoder]


def run_one(
    args: argparse.Namespace, clients: int, lr: float, local_epochs: int, seed: int
) -> dict[str, Any]:
    """One training run: centralised (clients 0) or federated over `clients` with `local_epochs` a round."""
    torch.set_num_threads(1)
    prep, params = _prepared(args.dataset, args.encoder), {**SMALL, "lr": lr, "seed": seed}
    t0, c0 = time.perf_counter(), time.process_time()
    rounds = args.epochs // local_epochs
    if clients == 0:
        rec = build_model("sasrec", {**params, **FED_PARAMS, "epochs": args.epochs})
        rec.fit(prep.split.train, None, content=prep.content)
        metrics, bytes_per_round = evaluate_splits(rec, prep, exclude_history=False), 0
        train_s = time.perf_counter() - t0
    else:
        cfg = FederatedConfig(clients=clients, rounds=rounds, local_epochs=local_epochs, seed=seed, params=params,
                              strategy=args.strategy, server_lr=args.server_lr,
                              keep_moments=not args.reset_moments)  # fmt: skip
        out = run_federated(prep, cfg, progress=False)
        metrics, bytes_per_round, train_s = out["metrics"], out["bytes_per_round"], out["time"]["train_s"]
    row = {"setting": "centralised" if clients == 0 else "federated", "clients": max(clients, 1), "seed": seed,
           "lr": lr, "local_epochs": local_epochs if clients else None, "rounds": rounds if clients else None,
           "epochs": args.epochs, "valid_NDCG@10": metrics["valid"]["NDCG@10"], "NDCG@10": metrics["test"]["NDCG@10"],
           "HR@10": metrics["test"]["HR@10"], "bytes_per_round": bytes_per_round, "train_s": round(train_s, 1),
           "cpu_s": round(time.process_time() - c0, 1)}  # fmt: skip
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _key(r: dict[str, Any]) -> int:
    return 0 if r["setting"] == "centralised" else int(r["clients"])


def chosen(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and seed, the run with the best validation NDCG@10 (rows before seeds existed: seed 0)."""
    best: dict[tuple[int, int], dict[str, Any]] = {}
    for r in runs:
        key = (_key(r), int(r.get("seed", 0)))
        if key not in best or r["valid_NDCG@10"] > best[key]["valid_NDCG@10"]:
            best[key] = r
    return [best[k] for k in sorted(best)]


def summary(picked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: the chosen runs' test NDCG@10 over seeds (mean, sd) and the ratio to centralised."""
    by: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in picked:
        by[_key(r)].append(r)
    base = statistics.fmean(r["NDCG@10"] for r in by[0]) if 0 in by else None
    rows = []
    for k in sorted(by):
        rs = by[k]
        test = mean_sd([r["NDCG@10"] for r in rs])
        mean, sd = float(test["mean"]), test["sd"]  # type: ignore[arg-type]
        rows.append({"setting": rs[0]["setting"], "clients": max(k, 1), "seeds": [r.get("seed", 0) for r in rs],
                     "chosen": [{"lr": r["lr"], "local_epochs": r.get("local_epochs") or (1 if k else None)} for r in rs],
                     "valid_NDCG@10": round(statistics.fmean(r["valid_NDCG@10"] for r in rs), 6),
                     "NDCG@10": round(mean, 6), "NDCG@10_sd": None if sd is None else round(float(sd), 6),  # type: ignore[arg-type]
                     "HR@10": round(statistics.fmean(r["HR@10"] for r in rs), 6),
                     "ndcg_vs_centralised": round(mean / base, 3) if base else None,
                     "bytes_per_round": rs[0]["bytes_per_round"]})  # fmt: skip
    return rows


def read_rows(paths: list[str]) -> list[dict[str, Any]]:
    """Run rows (one JSON object per line, as the runs print on stderr) from earlier invocations."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.startswith("{") and '"setting"' in line]
    return rows


def grid(args: argparse.Namespace) -> list[tuple[int, float, int, int]]:
    """(clients, lr, local_epochs, seed) of every run; clients 0 = centralised."""
    local = [int(x) for x in args.local_epochs.split(",")]
    if any(le < 1 or args.epochs % le for le in local):
        raise SystemExit(f"--local-epochs must divide --epochs ({args.epochs}); got {args.local_epochs}")
    seeds = parse_seeds(args.seeds)
    central = [(0, float(lr), 1, s) for s in seeds for lr in (args.central_lrs or args.lrs).split(",")]
    fed = [(int(n), float(lr), le, s) for s in seeds for n in args.clients.split(",") if n
           for lr in args.lrs.split(",") for le in local]  # fmt: skip
    return (central if not args.no_central else []) + fed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--clients", default="4,16")
    ap.add_argument(
        "--epochs",
        "--rounds",
        dest="epochs",
        type=int,
        default=20,
        help="total passes over the users (centralised epochs; federated rounds x local epochs)",
    )
    ap.add_argument(
        "--local-epochs", default="1", help="federated local epochs a round, tried and chosen on validation"
    )
    ap.add_argument("--lrs", default="0.002", help="learning rates tried per setting, chosen on validation")
    ap.add_argument(
        "--central-lrs", default="", help="the centralised side's learning rates (default: --lrs)"
    )
    ap.add_argument(
        "--no-central", action="store_true", help="federated runs only (combine with --rows later)"
    )
    ap.add_argument(
        "--seeds", default="0", help="seeds; the summary is the mean +- sd of the chosen runs over them"
    )
    ap.add_argument(
        "--rows",
        nargs="*",
        default=[],
        help="summarise these files' run rows (earlier runs' stderr) instead of training",
    )
    ap.add_argument("--strategy", choices=sorted(STRATEGIES), default="fedavg")
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--reset-moments", action="store_true", help="clients restart AdamW every round")
    ap.add_argument("--encoder", default="none", help="title encoder (none = IDs + attributes only)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (one process, one thread each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load, runs = os.getloadavg(), read_rows(args.rows)
    todo = [] if args.rows else grid(args)  # --rows: summarise only
    if todo:
        _prepared(args.dataset, args.encoder)  # once, before the pool: its forked workers inherit it
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            runs += list(pool.map(run_one, [args] * len(todo), *zip(*todo, strict=True)))
    picked = chosen(runs)
    rows = summary(picked)
    if args.json:
        print(json.dumps({"protocol": vars(args), "params": SMALL, "load_average_at_start": load,
                          "runs": runs, "chosen": picked, "rows": rows}, indent=1))  # fmt: skip
    else:
        print_table(rows, ["setting", "clients", "seeds", "valid_NDCG@10", "NDCG@10", "NDCG@10_sd", "HR@10",
                           "ndcg_vs_centralised", "bytes_per_round"])  # fmt: skip


if __name__ == "__main__":
    main()
