"""Online experiments on Amazon Beauty held-out users: A/A false-positive rate and the users A/B and
interleaving need to reach significance, side by side (issue 11 §2; results in docs/experiments.md).

Every experiment is `soutui.serving.simulate.Replay.run`: the leave-one-out test users' histories
served by a real RecService, answers through `Experiments.recommend`, clicks (position-based
click model, docs/experiments.md) credited through `Experiments.claim`, statistics from the
experiment log. One Replay serves every experiment; it memoises each (user, arm) list, since with
histories frozen a list depends on nothing else -- assignment, interleaving coins, clicks,
crediting and the tests run afresh in every experiment.

Shoppers (`--visits`, one or more): `data` = each shopper visits as many times as they have served
history events, `1` = the single-visit shopper, `N` = N visits each. Verdicts are the user-level
tests (clicks per user, Welch's t-test, for A/B; per-user preference, binomial test, for
interleaving); the A/A rows also count the impression-level test's false positives.

    SOUTUI_HOME=... OMP_NUM_THREADS=1 .venv/bin/python benchmarks/experiments_power.py \
        [--aa-runs 200] [--aa-users 2000] [--power-seeds 10] [--power-users 22363] \
        [--visits data 1] [--sasrec DIR]   # a `soutui train` run dir holding sasrec.onnx (training part)
        [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from statsmodels.stats.proportion import proportion_confint

from soutui.cli.common import print_table
from soutui.serving.settings import ArmConfig
from soutui.serving.simulate import ClickModel, Replay

METHODS = ("ab", "interleave")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sasrec_bundle(replay: Replay, run_dir: Path) -> str:
    """A bundle holding only the ONNX SASRec of `run_dir`, over the replay's catalogue order."""
    import shutil

    from soutui.serving.bundle import load_bundle
    from soutui.serving.bundle_build import write_bundle

    catalogue = load_bundle(replay.settings.bundle).catalogue
    import pandas as pd

    items = pd.DataFrame({"item_id": list(catalogue.item_ids), "title": catalogue.titles})

    def copy(path: Path) -> None:
        path.mkdir(parents=True)
        for name in ("sasrec.onnx", "sasrec.onnx.json", "item_vectors.npy"):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, path / name)

    out = write_bundle(replay.dir / "sasrec-bundles", "amazon-beauty", items, {}, "sasrec", onnx_models={"sasrec": copy})
    return str(out)


def _fpr(wins: int, runs: int) -> dict[str, Any]:
    lo, hi = proportion_confint(wins, runs, alpha=0.05, method="beta")  # Clopper-Pearson
    return {"false_positives": wins, "fpr": wins / runs, "fpr_ci95": [float(lo), float(hi)]}


def aa(replay: Replay, runs: int, users: int, click: ClickModel, visits: int | str) -> list[dict[str, Any]]:
    rows = []
    knn = ArmConfig(model="itemknn")
    for method in METHODS:
        t0, wins, imp_wins, impressions = time.perf_counter(), 0, 0, 0
        for seed in range(runs):
            out = replay.run(knn, knn, method, users, seed, click=click, visits=visits, check_every=users)
            wins += out["winner"] is not None
            imp_wins += out["impression_level"] is not None and out["impression_level"]["winner"] is not None
            impressions += out["impressions"]
            if (seed + 1) % 50 == 0:
                say(f"A/A {method} visits={visits}: {seed + 1}/{runs} runs, {wins} false positives")
        imp = _fpr(imp_wins, runs)
        rows.append({"method": method, "visits": visits, "runs": runs, "users_per_run": users,
                     "impressions_per_run": impressions / runs, **_fpr(wins, runs),
                     "impression_level": imp, "impression_level_fpr_ci95": imp["fpr_ci95"],
                     "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def power(replay: Replay, a: ArmConfig, b: ArmConfig, label: str, seeds: int, users: int,
          check_every: int, click: ClickModel, visits: int | str) -> list[dict[str, Any]]:
    rows = []
    for method in METHODS:
        t0 = time.perf_counter()
        runs = [replay.run(a, b, method, users, seed, check_every=check_every, click=click, visits=visits)
                for seed in range(seeds)]
        reached = [r["users_to_significance"] for r in runs if r["users_to_significance"] is not None]
        rows.append({
            "pair": label, "method": method, "visits": visits, "seeds": seeds, "max_users": users, "check_every": check_every,
            "reached": len(reached), "winners": [r["winner"] for r in runs],
            "median_users_to_significance": statistics.median(reached) if len(reached) == seeds else None,
            "users_to_significance": [r["users_to_significance"] for r in runs],
            "final_p_values": [r["p_value"] for r in runs],
            "seconds": round(time.perf_counter() - t0, 1),
        })
        say(f"{label} {method} visits={visits}: users to significance {rows[-1]['users_to_significance']}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--aa-runs", type=int, default=200, help="0 = no A/A runs")
    ap.add_argument("--aa-users", type=int, default=2000)
    ap.add_argument("--power-seeds", type=int, default=10, help="0 = no power runs")
    ap.add_argument("--power-users", type=int, default=22363, help="users per power run (at most the test users)")
    ap.add_argument("--check-every", type=int, default=100)
    ap.add_argument("--sasrec", default=None, help="run dir with sasrec.onnx; omitted = no itemknn vs SASRec row")
    ap.add_argument("--attract-other", type=float, default=ClickModel.attract_other,
                    help="click model: attractiveness of items the shopper does not want (noise clicks)")
    ap.add_argument("--visits", nargs="+", default=["data", "1"],
                    help="shoppers to run: 'data' (visits = served history events) and/or N visits each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    shoppers: list[int | str] = [v if v == "data" else int(v) for v in args.visits]
    click = ClickModel(attract_other=args.attract_other)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    replay = Replay(args.dataset, ["popularity", "itemknn"], cache_lists=True, progress=say)
    users = min(args.power_users, len(replay.user_ids))
    try:
        out: dict[str, Any] = {"dataset": args.dataset, "held_out_users": len(replay.user_ids),
                               "click_model": dataclasses.asdict(click), "aa": [], "power": []}
        pop, knn = ArmConfig(model="popularity"), ArmConfig(model="itemknn")
        sas = ArmConfig(model="sasrec", bundle=sasrec_bundle(replay, Path(args.sasrec))) if args.sasrec else None
        for visits in shoppers:
            if args.aa_runs:
                out["aa"] += aa(replay, args.aa_runs, args.aa_users, click, visits)
            if args.power_seeds < 1:  # an A/A-only run
                continue
            out["power"] += power(
                replay, pop, knn, "popularity vs itemknn", args.power_seeds, users, args.check_every, click, visits)
            if sas is not None:
                out["power"] += power(
                    replay, knn, sas, "itemknn vs sasrec", args.power_seeds, users, 5 * args.check_every, click, visits)
    finally:
        replay.close()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["loadavg_start"], out["loadavg_end"] = load0, os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print_table(out["aa"], ["method", "visits", "runs", "users_per_run", "false_positives", "fpr", "fpr_ci95",
                            "impression_level_fpr_ci95"])
    print()
    print_table(out["power"], ["pair", "method", "visits", "seeds", "reached", "median_users_to_significance", "users_to_significance"])
    print(f"\n{out['seconds']} s; load average {out['loadavg_start']} -> {out['loadavg_end']} (shared machine)")


if __name__ == "__main__":
    main()
