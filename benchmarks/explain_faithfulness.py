"""Are the attributions faithful? Remove the top-attributed history item vs a random one (Amazon Beauty).

Protocol (one model, N seeded test users of the leave-one-out split whose history has >= 2 items):
- the history is the test input (train + validation items, with their times); the explained item is
  the model's top-1 over the full catalogue with the history's own items excluded;
- attributions come from the model's own hook, `Recommender.attribute` (what /v1/recommend?explain=true
  and `soutui explain` serve): occlusion for SASRec and the MLP, neighbour evidence for item-kNN
  (`--method lime` for the LIME surrogate instead, `--method counterfactual` for the lead each history
  item accounts for over the best item left out; that is the margin the score-based race below measures,
  so for it `top_beats_random_score` is 1 by construction and the rank race is close to circular: read
  it as "does the method find the removal that moves the item", not as independent evidence);
- remove the history position with the largest attribution (ties: the most recent), and separately one
  uniformly random OTHER position (seeded); the explained item's fall = its rank after removal (0 = still
  first, full ranking, history excluded). top_beats_random = share of users where the top removal makes it
  fall further; a tie counts 1/2 (ties are also reported);
- the same race in the model's own score units: the explained item's margin (its score minus the best
  other non-history item's) before minus after each removal; `top_beats_random_score` = share of users
  where the top removal cuts the margin strictly more (a tie counts 0, never as a win). Rank ties (both
  removals leave the item first) are where the two measures differ;
- `oracle_top_beats_random`: every single removal is scored, and each user credited with what naming
  the removal of largest fall would win against a random other (ties 1/2): no attribution can beat it,
  so it is the model's own ceiling for top_beats_random (below 1 where no single item moves the top-1);
- AOPC (Samek et al. 2017): remove the top-1..K attributed positions cumulatively (K = min(5, h - 1)) and
  average the explained item's score drop over k = 0..K (k = 0 adds 0), in the model's score units;
  `aopc_random` is the same with a random order, the baseline it should beat.

Models are trained here on the TRAINING sequences with a short budget (stated in the output), or loaded
with --checkpoint (must share the dataset's item vocabulary).

    .venv/bin/python benchmarks/explain_faithfulness.py --model itemknn --users 1000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from soutui.data.sequences import leave_one_out
from soutui.evaluation.report import load_sequences
from soutui.models.attribution import METHODS
from soutui.models.base import Recommender
from soutui.models.registry import load_model, model_class
from soutui.training.trainer import LoopTrainer

K_AOPC = 5
SHORT = {  # short, stated training budgets for the shared 2-core machine
    "sasrec": {"max_minutes": 4.0, "progress": False, "threads": 1},
    "mlp": {},  # its defaults: up to 6 epochs, early stopping on validation NDCG@10 (patience 2)
    "itemknn": {},
}


def fit(
    name: str,
    minutes: float | None,
    checkpoint: str | None,
    data: Any,
    content: Any,
    epochs: int | None = None,
) -> tuple[Recommender, str]:
    if checkpoint:
        return load_model(checkpoint), f"checkpoint {checkpoint}"
    params = dict(SHORT.get(name, {}))
    if name == "sasrec" and minutes is not None:
        params["max_minutes"] = minutes
    if name == "mlp" and epochs is not None:
        params["epochs"] = epochs
    split = leave_one_out(data)
    model = model_class(name)(**params).use_trainer(LoopTrainer(progress=False))
    t0 = time.perf_counter()
    model.fit(split.train, split.valid, content=content)
    return (
        model,
        f"trained here on the training sequences with {params or 'defaults'} in {time.perf_counter() - t0:.0f} s",
    )


def rank_of(scores: np.ndarray, item: int, exclude: np.ndarray) -> int:
    """0-based full-ranking position of `item` (pessimistic ties), history items excluded."""
    s = scores.astype(np.float64).copy()
    s[exclude] = -np.inf
    return int((s > s[item]).sum() + (s == s[item]).sum() - 1)


def margin_of(scores: np.ndarray, item: int, exclude: np.ndarray) -> float:
    """The explained item's score minus the best OTHER item's (history excluded): > 0 while it is still
    first; its fall under a removal resolves what rank ties hide (both removals leave it first)."""
    s = scores.astype(np.float64).copy()
    s[exclude] = -np.inf
    s[item], own = -np.inf, s[item]
    return float(own - s.max())


def oracle_win(falls: np.ndarray) -> float:
    """The most any attribution can score on this user in the rank race: name the removal with the
    largest fall, against a uniformly random other one (ties 1/2). An upper bound of `win`'s mean."""
    best = int(np.argmax(falls))
    others = np.delete(falls, best)
    return float(np.mean((falls[best] > others) + 0.5 * (falls[best] == others)))


def one_user(
    model: Recommender, hist: np.ndarray, ts: np.ndarray | None, rng: np.random.Generator, method: str
) -> dict[str, float]:
    tsl = None if ts is None else [ts]
    base = model.score([hist], tsl)[0].astype(np.float64)
    base[hist] = -np.inf
    item = int(np.argmax(base))
    (row,) = model.attribute(hist, np.array([item]), ts, method=method)
    w = np.zeros(len(hist))
    for a in row:
        if a.kind == "history_item" and a.position is not None:
            w[a.position] = a.weight
    h = len(hist)
    top = h - 1 - int(np.argmax(w[::-1]))  # ties -> the most recent position
    rand = int(rng.choice([j for j in range(h) if j != top]))
    order = [top] + [int(j) for j in np.argsort(-w, kind="stable") if j != top]
    rorder = [int(j) for j in rng.permutation(h)]
    k = min(K_AOPC, h - 1)
    variants = [np.delete(np.arange(h), [j]) for j in range(h)]  # every single removal
    variants += [np.delete(np.arange(h), order[: i + 1]) for i in range(k)]
    variants += [np.delete(np.arange(h), rorder[: i + 1]) for i in range(k)]
    hs = [hist[v] for v in variants]
    tss = None if ts is None else [ts[v] for v in variants]
    s = model.score(hs, tss).astype(np.float64)
    s0 = model.score([hist], tsl)[0, item]
    falls = np.array([rank_of(s[j], item, hist) for j in range(h)])
    fall_top, fall_rand = falls[top], falls[rand]
    m0 = margin_of(base, item, hist)
    drop_top, drop_rand = m0 - margin_of(s[top], item, hist), m0 - margin_of(s[rand], item, hist)
    drops = s0 - s[h : h + k, item]
    rdrops = s0 - s[h + k :, item]
    return {
        "win": 1.0 if fall_top > fall_rand else 0.5 if fall_top == fall_rand else 0.0,
        "oracle_win": oracle_win(falls),
        "tie": float(fall_top == fall_rand),
        # the same race in the model's own score margin; a tie is NOT a win (it counts 0)
        "score_win": float(drop_top > drop_rand),
        "score_tie": float(drop_top == drop_rand),
        "fall_top": fall_top,
        "fall_random": fall_rand,
        "aopc": float(drops.sum() / (k + 1)),
        "aopc_random": float(rdrops.sum() / (k + 1)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="itemknn", choices=["itemknn", "mlp", "sasrec"])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--method", default="occlusion", choices=METHODS)
    ap.add_argument("--minutes", type=float, default=None, help="SASRec training budget (default 4)")
    ap.add_argument("--epochs", type=int, default=None, help="MLP epochs (default: its own, with early stopping)")
    ap.add_argument("--checkpoint", default=None, help="a saved model instead of training one here")
    ap.add_argument(
        "--head-weight", type=float, default=None, help="SASRec: score with this co-occurrence head weight"
    )
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data, content = load_sequences(args.dataset, encoder="minilm" if args.model != "itemknn" else "none")
    model, how = fit(args.model, args.minutes, args.checkpoint, data, content, args.epochs)
    split = leave_one_out(data)
    test = split.test
    rng = np.random.default_rng(args.seed)
    ok = [i for i in range(len(test)) if len(test.histories[i]) >= 2]
    pick = rng.permutation(ok)[: args.users]
    rows = []
    t1 = time.perf_counter()
    variant = {} if args.head_weight is None else {"head_weight": args.head_weight}
    with model.variant(**variant):
        for n, i in enumerate(pick):
            hist = np.asarray(test.histories[i], np.int64)
            ts = None if test.timestamps is None else np.asarray(test.timestamps[i])
            rows.append(one_user(model, hist, ts, rng, args.method))
            if (n + 1) % 100 == 0:
                print(f"{n + 1}/{len(pick)} users", file=sys.stderr)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out = {
        "model": args.model,
        "users": len(rows),
        "top_beats_random": round(mean["win"], 4),
        "aopc": round(mean["aopc"], 6),
        "aopc_random": round(mean["aopc_random"], 6),
        "ties": round(mean["tie"], 4),
        # what a perfect attribution would score: the model's own ceiling for top_beats_random
        "oracle_top_beats_random": round(mean["oracle_win"], 4),
        # the same share among users where the two removals leave the item at different ranks
        "top_beats_random_decisive": round(
            (mean["win"] - 0.5 * mean["tie"]) / max(1.0 - mean["tie"], 1e-12), 4
        ),
        "top_beats_random_score": round(mean["score_win"], 4),
        "score_ties": round(mean["score_tie"], 4),
        "mean_fall_top": round(mean["fall_top"], 2),
        "mean_fall_random": round(mean["fall_random"], 2),
        "method": "neighbour evidence"
        if args.model == "itemknn" and args.method == "occlusion"
        else args.method,
        "model_source": how,
        "variant": variant,
        "protocol": "Beauty leave-one-out test users with >= 2 history items, seeded sample; explained item = "
        "top-1 with history excluded; rank-based: ties count 1/2; score-based (margin to the best other "
        "item): ties count 0; AOPC over the top-5 removals in score units",
        "seconds": {"fit": round(t1 - t0, 1), "explain": round(time.perf_counter() - t1, 1)},
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
