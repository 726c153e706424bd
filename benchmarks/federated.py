"""Federated SASRec (Flower, FedAvg) against centralised SASRec under the same total compute (issue 12 §3).

Same total compute: R rounds x 1 local epoch over every client's users = R epochs over all users,
which is what the centralised model gets (no early stopping either side; co-occurrence head and
cold-item reset off on both sides, as federated training needs). Test: leave-one-out, full ranking
over all items, pessimistic ties, all test users. Bytes per round: the serialized parameter
tensors sent up by all clients plus the global model sent down to each.

    .venv/bin/python benchmarks/federated.py --clients 4,16 --rounds 20 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from soutui.cli.common import print_table
from soutui.training.federated import FED_PARAMS, FederatedConfig, run_federated
from soutui.training.pipeline import build_model, evaluate_splits, prepare

SMALL = {
    "d_model": 32,
    "n_heads": 2,
    "n_layers": 2,
    "max_len": 20,
    "batch_size": 128,
    "lr": 2e-3,
    "threads": 1,
}


def centralised(prep: Any, rounds: int) -> dict[str, Any]:
    rec = build_model("sasrec", {**SMALL, **FED_PARAMS, "epochs": rounds})
    t0 = time.perf_counter()
    rec.fit(prep.split.train, None, content=prep.content)
    train_s = time.perf_counter() - t0
    m = evaluate_splits(rec, prep, exclude_history=False)["test"]
    return {"setting": "centralised", "clients": 1, "NDCG@10": m["NDCG@10"], "HR@10": m["HR@10"],
            "bytes_per_round": 0, "train_s": round(train_s, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--clients", default="4,16")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--encoder", default="none", help="title encoder (none = IDs + attributes only)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prep = prepare(args.dataset, encoder=args.encoder, progress=False)
    rows = [centralised(prep, args.rounds)]
    print(json.dumps(rows[-1]), file=sys.stderr)
    for n in (int(c) for c in args.clients.split(",")):
        out = run_federated(
            prep, FederatedConfig(clients=n, rounds=args.rounds, params=SMALL), progress=False
        )
        m = out["metrics"]["test"]
        rows.append({"setting": "federated", "clients": n, "NDCG@10": m["NDCG@10"], "HR@10": m["HR@10"],
                     "bytes_per_round": out["bytes_per_round"], "train_s": out["time"]["train_s"]})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr)
    base = rows[0]["NDCG@10"]
    for r in rows:
        r["ndcg_vs_centralised"] = round(r["NDCG@10"] / base, 3) if base else None
    if args.json:
        print(json.dumps({"protocol": vars(args), "params": SMALL, "rows": rows}, indent=1))
    else:
        print_table(
            rows,
            ["setting", "clients", "NDCG@10", "HR@10", "ndcg_vs_centralised", "bytes_per_round", "train_s"],
        )


if __name__ == "__main__":
    main()
