"""Amazon Beauty: `implicit` ALS tuned with Optuna on VALIDATION, then test read once (the peer's fair chance).

Protocol: leave-one-out (last item = test, second-last = validation, fitted on the rest); FULL
ranking over all 12,101 items; pessimistic ties; soutui's own metric code. Each trial fits ALS on
the training sequences and is scored by validation NDCG@10 (history kept, or excluded with
`--objective excluded`), the objective; the test split is never handed to the search. The best
parameters are then refitted once per seed (`--seeds`, the seed of implicit's factor init) the
same way `beauty_sasrec.py`'s ALS row is fitted: on the training sequences, each user's history
folded in at scoring time (for a test user it includes the validation item). Test figures with
history items kept and excluded, mean ± sd (ddof=1) over seeds. One thread (OpenBLAS and
implicit), since the machine is shared; the budget (`--trials`, `--minutes`, whichever ends
first; a trial running at the deadline finishes), wall and CPU time and the load average are
printed with the figures.

    .venv/bin/python benchmarks/peer_als_tuned.py [--trials 40] [--minutes 15] [--seeds 0,1,2] [--objective kept] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

from peers_implicit import ImplicitALS
from seeds import fmt, mean_sd, parse_seeds

from soutui.data.sequences import EvalSplit, LeaveOneOut, SequenceData
from soutui.evaluation.protocol import evaluate_full_ranking

KS = (10, 20)
DEFAULTS = {k: v for k, v in ImplicitALS().params().items() if k != "seed"}  # beauty_sasrec.py's untuned row


# name -> (low, high, log scale): the ranges a fair ALS user would search
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "factors": (32, 512, True), "regularization": (1e-3, 1000.0, True), "alpha": (0.01, 100.0, True),
    "iterations": (10, 100, False), "K1": (1.0, 1000.0, True), "B": (0.0, 1.0, False),
}  # fmt: skip
INTEGER = {"factors", "iterations"}


def search_space(trial: Any) -> dict[str, Any]:
    """What a fair ALS user would search; K1 / B only matter (and are only drawn) with BM25."""

    def draw(name: str) -> float:
        lo, hi, log = BOUNDS[name]
        if name in INTEGER:
            return int(trial.suggest_int(name, int(lo), int(hi), log=log))
        return float(trial.suggest_float(name, lo, hi, log=log))

    params: dict[str, Any] = {k: draw(k) for k in ("factors", "regularization", "alpha", "iterations")}
    params["weighting"] = trial.suggest_categorical("weighting", ["none", "bm25", "tfidf"])
    if params["weighting"] == "bm25":
        params.update(K1=draw("K1"), B=draw("B"))
    return params


def at_edges(params: dict[str, Any], margin: float = 0.05) -> list[str]:
    """Parameters chosen within `margin` (of the range, on its scale) of a bound: the range may be too narrow."""
    out = []
    for name, value in params.items():
        if name not in BOUNDS:
            continue
        lo, hi, log = BOUNDS[name]
        f = (lambda x: math.log(x)) if log else (lambda x: x)
        pos = (f(value) - f(lo)) / (f(hi) - f(lo))
        if pos <= margin or pos >= 1 - margin:
            out.append(
                f"{name}={value:.4g} at the {'lower' if pos <= margin else 'upper'} edge [{lo:g}, {hi:g}]"
            )
    return out


def validation_objective(
    train: SequenceData, valid: EvalSplit, threads: int = 1, exclude_history: bool = False
) -> Any:
    """Optuna objective: fit on `train`, return validation NDCG@10. It is never given the test split."""

    def objective(trial: Any) -> float:
        params = search_space(trial)
        t0, c0 = time.perf_counter(), time.process_time()
        rec = ImplicitALS(**params, seed=0, threads=threads).fit(train)
        fit_s = time.perf_counter() - t0
        res = evaluate_full_ranking(rec, valid, train.n_items, (10,), exclude_history=exclude_history)
        trial.set_user_attr("valid_HR@10", res["HR@10"])
        trial.set_user_attr("fit_s", round(fit_s, 1))
        trial.set_user_attr("trial_s", round(time.perf_counter() - t0, 1))
        trial.set_user_attr("trial_cpu_s", round(time.process_time() - c0, 1))
        trial.set_user_attr("load_avg_1m", round(os.getloadavg()[0], 2))
        return float(res["NDCG@10"])

    return objective


def tune(
    train: SequenceData,
    valid: EvalSplit,
    trials: int,
    minutes: float,
    seed: int = 0,
    threads: int = 1,
    exclude_history: bool = False,
    start: list[dict[str, Any]] | None = None,
) -> Any:
    """A seeded TPE study (no pruning); stops after `trials` trials or `minutes` (0 = no limit).
    `start`: points tried first (e.g. an earlier search's best), as a user resuming a search would."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for params in start or []:
        study.enqueue_trial(params)
    study.optimize(
        validation_objective(train, valid, threads, exclude_history), n_trials=trials, timeout=minutes * 60 if minutes else None,
        callbacks=[_progress],
    )  # fmt: skip
    return study


def _progress(study: Any, trial: Any) -> None:
    print(f"trial {trial.number}: valid NDCG@10 {trial.value:.4f} ({trial.user_attrs.get('trial_s')} s) "
          f"best {study.best_value:.4f} {trial.params}", file=sys.stderr, flush=True)  # fmt: skip


def trajectory(study: Any) -> list[dict[str, Any]]:
    best, out = float("-inf"), []
    for t in study.trials:
        if t.value is None:
            continue
        best = max(best, t.value)
        out.append({"trial": t.number, "valid_NDCG@10": round(t.value, 6), "best_so_far": round(best, 6),
                    "params": t.params, **t.user_attrs})  # fmt: skip
    return out


def measure(split: LeaveOneOut, params: dict[str, Any], seed: int, threads: int = 1) -> dict[str, Any]:
    """Fit on training sequences with `seed`; validation and test (history kept / excluded)."""
    t0, c0 = time.perf_counter(), time.process_time()
    rec = ImplicitALS(**params, seed=seed, threads=threads).fit(split.train)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    n = split.train.n_items
    return {
        "seed": seed,
        "params": rec.params(),
        "valid": evaluate_full_ranking(rec, split.valid, n, KS),
        "test": evaluate_full_ranking(rec, split.test, n, KS),
        "test_excluding_history": evaluate_full_ranking(rec, split.test, n, KS, exclude_history=True),
        "fit_s": round(fit_s, 1),
        "fit_cpu_s": round(fit_cpu_s, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


COLUMNS = {  # column -> (part, metric)
    "valid NDCG@10": ("valid", "NDCG@10"), "test HR@10": ("test", "HR@10"), "test NDCG@10": ("test", "NDCG@10"),
    "HR@10 excl.": ("test_excluding_history", "HR@10"), "NDCG@10 excl.": ("test_excluding_history", "NDCG@10"),
}  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats = {col: mean_sd([r[part][m] for r in rows]) for col, (part, m) in COLUMNS.items()}
    return {**stats, "fit s": mean_sd([r["fit_s"] for r in rows])}


def report(out: dict[str, Any]) -> str:
    head = ("row", *COLUMNS, "fit s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in [out["untuned"], *out["refits"]]:
        label = (
            "defaults (64 f., reg 0.05, alpha 10, 15 it.)"
            if r is out["untuned"]
            else f"tuned, seed {r['seed']}"
        )
        cells = [f"{r[p][m]:.4f}" for p, m in COLUMNS.values()]
        lines.append("| " + " | ".join([label, *cells, f"{r['fit_s']:.1f}"]) + " |")
    s = out["summary"]
    cells = [fmt(s[c]) for c in COLUMNS] + [fmt(s["fit s"], 1)]
    lines.append("| " + " | ".join([f"tuned, mean ± sd over seeds {out['seeds']}", *cells]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=40, help="most trials to run")
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of the search (0 = none)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the refit (implicit's factor init)")
    ap.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--objective",
        choices=("kept", "excluded"),
        default="kept",
        help="validation NDCG@10 with history items kept (the table's convention) or excluded",
    )
    ap.add_argument("--start", action="append", default=[], metavar="JSON",
                    help="a point to try first, as JSON params (repeatable), e.g. an earlier search's best")  # fmt: skip
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--json", action="store_true", help="print everything as JSON")
    args = ap.parse_args(argv)
    args.seed_list = parse_seeds(args.seeds)
    return args


def run(split: LeaveOneOut, args: argparse.Namespace) -> dict[str, Any]:
    load0, t0, c0 = os.getloadavg(), time.perf_counter(), time.process_time()
    excl = args.objective == "excluded"
    start = [json.loads(p) for p in args.start]
    study = tune(split.train, split.valid, args.trials, args.minutes, args.sampler_seed, args.threads, excl, start)
    search_s, search_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    best = {**study.best_trial.params}
    refits = [measure(split, best, seed, args.threads) for seed in args.seed_list]
    return {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "budget": {"trials": args.trials, "minutes": args.minutes, "threads": args.threads, "start": start},
        "objective": "valid NDCG@10, history " + ("excluded" if excl else "kept"),
        "trials_done": len(trajectory(study)),
        "search_s": round(search_s, 1),
        "search_cpu_s": round(search_cpu_s, 1),
        "best_params": best,
        "best_valid_NDCG@10": round(study.best_value, 6),
        "best_at_edges": at_edges(best),
        "trajectory": trajectory(study),
        "seeds": args.seed_list,
        "refits": refits,
        "summary": summarize(refits),
        "untuned": measure(split, DEFAULTS, 0, args.threads),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    from soutui.training.pipeline import prepare

    with threadpool_limits(limits=args.threads):
        prep = prepare(args.dataset, encoder="none", progress=False)
        out = run(prep.split, args)
    out["data"] = prep.data.stats()
    if args.json:
        json.dump(out, sys.stdout, indent=1, default=str)
        print()
        return 0
    print(out["protocol"])
    print(f"data: {out['data']}")
    print(f"search: {out['trials_done']} trials in {out['search_s']:.0f} s wall / {out['search_cpu_s']:.0f} CPU s "
          f"(budget {args.trials} trials / {args.minutes:g} min); load average {out['load_avg_start']} -> "
          f"{out['load_avg_end']}")  # fmt: skip
    print(
        f"best on validation ({out['objective']}): NDCG@10 {out['best_valid_NDCG@10']:.4f} with {out['best_params']}"
    )
    for edge in out["best_at_edges"]:
        print(f"WARNING: {edge}; a wider range may find better parameters")
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
