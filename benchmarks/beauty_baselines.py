"""Baselines on Amazon Beauty, leave-one-out, FULL ranking, both history settings, and the
published PopRec comparison (with the leaky all-interactions popularity, clearly labelled).

    .venv/bin/python benchmarks/beauty_baselines.py [--models popularity,itemknn] [--json]
"""

from __future__ import annotations

import argparse
import json

from soutui.cli.common import print_table
from soutui.evaluation.report import (
    BASELINES,
    columns_of,
    evaluate_baselines,
    leaky_popularity,
    load_sequences,
)
from soutui.training.trainer import LoopTrainer

PUBLISHED_POPREC = {"HR@10": 0.0152, "NDCG@10": 0.0068}  # S3-Rec (CIKM 2020) full-ranking table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--models", default=",".join(BASELINES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    out: dict = {"dataset": args.dataset, "results": []}
    for exclude in (False, True):
        res = evaluate_baselines(
            args.dataset,
            models=models,
            exclude_history=exclude,
            ks=(10, 20),
            trainer=LoopTrainer(progress=False),
        )
        out["results"] += res
    data, _ = load_sequences(args.dataset, encoder="none")
    out["leaky_popularity"] = leaky_popularity(data, ks=(10, 20))
    out["published_poprec"] = PUBLISHED_POPREC
    if args.json:
        print(json.dumps(out, indent=2))
        return
    rows = []
    for r in out["results"]:
        for part in ("valid", "test"):
            m = r["metrics"][part]
            rows.append(
                {
                    "model": r["model"],
                    "exclude_history": r["protocol"]["exclude_history"],
                    "part": part,
                    "HR@10": m["HR@10"],
                    "NDCG@10": m["NDCG@10"],
                    "HR@20": m["HR@20"],
                    "NDCG@20": m["NDCG@20"],
                    "train_s": r["train_seconds"],
                }
            )
    leak = out["leaky_popularity"]["metrics"]["test"]
    rows.append({"model": "popularity LEAKY (not a result)", "exclude_history": False, "part": "test",
                 "HR@10": leak["HR@10"], "NDCG@10": leak["NDCG@10"], "HR@20": leak["HR@20"],
                 "NDCG@20": leak["NDCG@20"]})  # fmt: skip
    rows.append({"model": "PopRec published (S3-Rec)", "part": "test", **PUBLISHED_POPREC})
    print(f"{args.dataset}: leave-one-out, full ranking over all items, pessimistic ties")
    print_table(rows, columns_of(rows))


if __name__ == "__main__":
    main()
