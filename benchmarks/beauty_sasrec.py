"""Amazon Beauty: soutui's SASRec ablation vs an external PyPI reference (implicit ALS), same split, same metrics.

Protocol: leave-one-out (last item = test, second-last = validation); FULL ranking over all
12,101 items; pessimistic ties; reported with history items NOT excluded (the published
convention) and excluded. Early stopping and every choice use VALIDATION NDCG@10 only.
Cold-start slice: test users whose target occurs < 5 times in the training sequences.
Training is bounded by a CPU-time budget per variant (`--cpu-minutes`) because the machine
is shared; wall time, CPU time and the machine load are printed beside every number.
Each variant runs once per seed (`--seeds 0,1,2`); every seed's row is printed, then the
mean ± sample sd (ddof=1) over seeds.
`--refit` also measures the served recipe of `bundle build --refit` one step back: each run's model
refitted (its best epoch count and head weight, both chosen on validation) on every event up to each
user's validation item, scored on the test items, with item-kNN refitted on the same events beside it.

    .venv/bin/python benchmarks/beauty_sasrec.py [--variants id-only,full] [--cpu-minutes 15] [--seeds 0,1,2] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

import numpy as np
from curves import describe, mean_share, reached_by
from seeds import fmt, mean_sd, parse_seeds

from soutui.data.sequences import EvalSplit, LeaveOneOut, SequenceData
from soutui.evaluation.protocol import evaluate_full_ranking
from soutui.features.content import ItemContent
from soutui.models.base import Recommender
from soutui.models.itemknn import ItemKNN
from soutui.models.sasrec_recommender import SASRecRecommender
from soutui.training.pipeline import Prepared, parse_overrides, prepare
from soutui.training.trainer import LoopTrainer

PUBLISHED = {  # NDCG@10, HR@10 on this split, history not excluded
    "SASRec (S3-Rec table)": (0.0318, 0.0605),
    "TIGER (NeurIPS 2023)": (0.0384, 0.0648),
    "plain SASRec full CE, ID-only (independent)": (0.044, 0.077),
    "plain SASRec full CE + MiniLM titles (independent)": (0.046, 0.086),
}

COMMON: dict[str, Any] = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 2,
    "max_len": 50,
    "batch_size": 256,
    "lr": 0.002,
}
# each step adds one thing to the previous one (the ablation reads top to bottom)
VARIANTS: dict[str, dict[str, Any]] = {
    "id-only": {
        "use_text": False,
        "use_attrs": False,
        "use_time": False,
        "seen_bias": False,
        "item_bias": False,
    },
    "+title": {
        "use_text": True,
        "use_attrs": False,
        "use_time": False,
        "seen_bias": False,
        "item_bias": False,
    },
    "+attributes": {
        "use_text": True,
        "use_attrs": True,
        "use_time": False,
        "seen_bias": False,
        "item_bias": False,
    },
    "+time": {"use_text": True, "use_attrs": True, "use_time": True, "seen_bias": False, "item_bias": False},
    "+seen/item bias, id-dropout (full)": {
        "use_text": True,
        "use_attrs": True,
        "use_time": True,
        "seen_bias": True,
        "item_bias": True,
        "id_dropout": 0.2,
        "cooc_neighbors": 100,
    },  # fmt: skip
}
# the co-occurrence head is measured inside the full variant (weight 0 = the transformer alone)
NO_HEAD = {"cooc_neighbors": 0}
ALIASES = {
    "full": "+seen/item bias, id-dropout (full)",
    "title": "+title",
    "attributes": "+attributes",
    "time": "+time",
}


class ImplicitALS(Recommender):
    """implicit's ALS behind the soutui contract: a history is folded in as a new user."""

    name = "implicit-als"

    def __init__(
        self, factors: int = 64, regularization: float = 0.05, iterations: int = 15, alpha: float = 10.0
    ):
        self.kw = {
            "factors": factors,
            "regularization": regularization,
            "iterations": iterations,
            "alpha": alpha,
        }

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> ImplicitALS:
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares

        rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(train.sequences)])
        cols = np.concatenate(train.sequences)
        ui = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(train.n_users, train.n_items)
        )
        ui.data[:] = 1.0
        self.model_ = AlternatingLeastSquares(**self.kw, random_state=0, num_threads=1)
        self.model_.fit(ui, show_progress=False)
        self.n_items_ = train.n_items
        return self

    def score(self, histories: Any, timestamps: Any = None) -> np.ndarray:
        import scipy.sparse as sp

        rows = np.concatenate([np.full(len(h), i) for i, h in enumerate(histories)] or [np.zeros(0, int)])
        cols = np.concatenate(list(histories) or [np.zeros(0, int)])
        ui = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), self.n_items_)
        )
        ui.data[:] = 1.0
        users = self.model_.recalculate_user(np.arange(len(histories)), ui)
        return np.asarray(users @ self.model_.item_factors.T)

    def _save_state(self, path: Any) -> None:  # benchmark only
        raise NotImplementedError

    def _load_state(self, path: Any) -> None:
        raise NotImplementedError


def limit_users(prep: Prepared, n: int, seed: int = 0) -> Prepared:
    """The same training data, evaluated on a seeded sample of n validation / test users."""
    sp = prep.split

    def sample(split: EvalSplit) -> EvalSplit:
        if len(split) <= n:
            return split
        return split.take(np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False)))

    return Prepared(
        prep.dataset, prep.data, LeaveOneOut(sp.train, sample(sp.valid), sample(sp.test)), prep.content
    )


def cold_slice(prep: Prepared, max_count: int = 5) -> EvalSplit:
    counts = np.bincount(np.concatenate(prep.split.train.sequences), minlength=prep.data.n_items)
    t = prep.split.test
    return t.take(np.flatnonzero(counts[t.targets] < max_count), "test-cold")


def measure(
    rec: Recommender, prep: Prepared, cold: EvalSplit, train_s: float, cpu_s: float, epochs: int
) -> dict[str, Any]:
    n = prep.data.n_items
    out: dict[str, Any] = {
        "valid": evaluate_full_ranking(rec, prep.split.valid, n, (10, 20)),
        "test": evaluate_full_ranking(rec, prep.split.test, n, (10, 20)),
        "test_excluding_history": evaluate_full_ranking(
            rec, prep.split.test, n, (10, 20), exclude_history=True
        ),
        "test_cold": evaluate_full_ranking(rec, cold, n, (10,)),
        "train_s": round(train_s, 1),
        "train_cpu_s": round(cpu_s, 1),
        "epochs": epochs,
        "interactions_per_s": round(prep.split.train.n_interactions * max(epochs, 1) / max(train_s, 1e-9), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    return out


def onnx_check(rec: SASRecRecommender, prep: Prepared, out_dir: str) -> dict[str, Any]:
    """Save + export ONNX (float and int8) and measure both on VALIDATION against PyTorch."""
    from soutui.models.sasrec_onnx import OnnxScorer, export_onnx

    rec.save(out_dir)
    export_onnx(rec, out_dir, quantize=True)
    n, v = prep.data.n_items, prep.split.valid
    res: dict[str, Any] = {"dir": out_dir}
    for tag, scorer in (("onnx", OnnxScorer(out_dir)), ("onnx_int8", OnnxScorer(out_dir, int8=True))):
        t0 = time.perf_counter()
        res[tag] = evaluate_full_ranking(scorer, v, n, (10,))
        res[tag]["seconds"] = round(time.perf_counter() - t0, 1)
    h, ts = v.histories[:512], (v.timestamps[:512] if v.timestamps is not None else None)
    ref, got = rec.score(h, ts), OnnxScorer(out_dir).score(h, ts)
    res["max_abs_diff_float"] = float(np.abs(ref - got).max())
    return res


def through_validation(prep: Prepared) -> SequenceData:
    """Every event but each user's test item: what the served recipe (`refit`) learns from, one step back."""
    d = prep.data
    times = None if d.timestamps is None else [np.asarray(t)[:-1] for t in d.timestamps]
    return d.with_sequences([np.asarray(s)[:-1] for s in d.sequences], times)


def refit_rows(rec: SASRecRecommender, prep: Prepared, name: str, seed: int) -> list[dict[str, Any]]:
    """`rec` refitted through each user's validation item, then scored on the test items (the transformer
    alone, and with the head at the weight validation chose), and item-kNN fitted on the same events.
    Validation was trained on, so only test is reported."""
    back, n, test = through_validation(prep), prep.data.n_items, prep.split.test
    t0, c0 = time.perf_counter(), time.process_time()
    new = rec.refit(back)
    cost = {"train_s": round(time.perf_counter() - t0, 1), "train_cpu_s": round(time.process_time() - c0, 1),
            "epochs": int((new.training_report() or {})["epoch"]), "interactions": back.n_interactions}  # fmt: skip
    weight = float(new._net().cooc_alpha)
    models: list[tuple[str, Recommender, float | None]] = [
        (f"{name}: transformer alone", new, 0.0), (f"{name} + head (weight {weight:g})", new, None),
        ("item-kNN", ItemKNN().fit(back), None),
    ]  # fmt: skip
    rows = []
    for label, model, w in models:
        with model.variant(head_weight=w) if w is not None else contextlib.nullcontext():
            row = {"test": evaluate_full_ranking(model, test, n, (10, 20)),
                   "test_excluding_history": evaluate_full_ranking(model, test, n, (10, 20), exclude_history=True)}  # fmt: skip
        rows.append({"refit": label, "seed": seed, **row, **(cost if model is new else {})})
    return rows


def refit_table(rows: list[dict[str, Any]]) -> str:
    """Each refit row, then mean ± sd (ddof=1) over seeds per label."""
    cols = {"test NDCG@10": ("test", "NDCG@10"), "test HR@10": ("test", "HR@10"),
            "NDCG@10 excl.": ("test_excluding_history", "NDCG@10")}  # fmt: skip
    lines = ["| refitted through validation | seed | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_label.setdefault(r["refit"].split(" (weight")[0], []).append(r)
        lines.append(f"| {r['refit']} | {r['seed']} | " + " | ".join(f"{r[p][m]:.4f}" for p, m in cols.values()) + " |")
    for label, rs in by_label.items():
        cells = [fmt(mean_sd([r[p][m] for r in rs])) for p, m in cols.values()]
        lines.append(f"| **{label}**, mean ± sd | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_variant(
    name: str,
    params: dict[str, Any],
    prep: Prepared,
    cold: EvalSplit,
    save_dir: str | None = None,
    refits: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train one variant; a variant with the co-occurrence head yields two rows (without / with it).
    With `refits`, the refit one step back is measured too and its rows appended there."""
    rec = SASRecRecommender(**params).use_trainer(LoopTrainer())
    t0, c0 = time.perf_counter(), time.process_time()
    rec.fit(prep.split.train, prep.split.valid, content=prep.content)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    st = rec.training_report() or {}
    net = rec._net()
    alpha, slug = float(net.cooc_alpha), "".join(c if c.isalnum() else "-" for c in name).strip("-")
    seed = f" [seed {params.get('seed', 0)}]"
    reached = reached_by(st.get("history", []))  # the same training run for both rows
    rows = []
    if net.cooc_idx is not None:  # the transformer alone first: the same network with head weight 0
        with rec.cooc_weight(0.0):
            alone = measure(rec, prep, cold, train_s, cpu_s, int(st["epoch"]))
        alone.update({"variant": f"{name}: transformer alone (head weight 0)", "seed": params.get("seed", 0),
                      "valid_reached": reached})  # fmt: skip
        alone["label"] = alone["variant"] + seed
        rows.append(alone)
        name = f"{name} + co-occurrence head (weight chosen on validation)"
    if refits is not None:
        refits += refit_rows(rec, prep, name.split(" + ")[0], int(params.get("seed", 0)))
    res = measure(rec, prep, cold, train_s, cpu_s, int(st["epoch"]))
    res.update({"variant": name, "label": f"{name}{seed}, weight {alpha:g}", "seed": params.get("seed", 0),
                "params": params, "best_epoch": st["best_epoch"], "stopped": st["stopped"],
                "history": st["history"], "cooc_valid": rec.cooc_valid_, "valid_reached": reached})  # fmt: skip
    if save_dir:
        res["onnx_check"] = onnx_check(rec, prep, os.path.join(save_dir, slug))
    return [*rows, res]


def run_external(prep: Prepared, cold: EvalSplit) -> dict[str, Any]:
    rec = ImplicitALS()
    t0, c0 = time.perf_counter(), time.process_time()
    rec.fit(prep.split.train)
    res = measure(
        rec, prep, cold, time.perf_counter() - t0, time.process_time() - c0, int(rec.kw["iterations"])
    )
    res.update({"variant": "implicit ALS (PyPI reference)", "label": "implicit ALS (PyPI reference)",
                "params": rec.kw})  # fmt: skip
    return res


SUMMARY_METRICS = {  # column -> (part, metric)
    "valid NDCG@10": ("valid", "NDCG@10"), "test NDCG@10": ("test", "NDCG@10"), "test HR@10": ("test", "HR@10"),
    "NDCG@10 excl.": ("test_excluding_history", "NDCG@10"), "HR@10 excl.": ("test_excluding_history", "HR@10"),
    "cold NDCG@10": ("test_cold", "NDCG@10"),
}  # fmt: skip


def seed_summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: mean ± sd (ddof=1) over its seeds of every table metric and the training time."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "seed" in r:
            by_variant.setdefault(r["variant"], []).append(r)
    out = []
    for variant, rows in by_variant.items():
        stats = {col: mean_sd([r[part][m] for r in rows]) for col, (part, m) in SUMMARY_METRICS.items()}
        stats["train s"] = mean_sd([r["train_s"] for r in rows])
        share = mean_share(rows)  # validation after 10 minutes / its final value
        if share is not None:
            stats["valid share @10 min"] = share
        out.append({"variant": variant, "seeds": [r["seed"] for r in rows], "metrics": stats})
    return out


def summary_table(summary: list[dict[str, Any]]) -> str:
    head = ("variant", "seeds", *SUMMARY_METRICS, "train s", "valid share @10 min")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [fmt(s["metrics"][c]) for c in SUMMARY_METRICS] + [fmt(s["metrics"]["train s"], 0)]
        share = s["metrics"].get("valid share @10 min")
        cells.append(fmt(share, 3) if share else "")
        lines.append("| " + " | ".join([s["variant"], ",".join(map(str, s["seeds"])), *cells]) + " |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    head = ("variant", "valid NDCG@10", "test NDCG@10", "test HR@10", "NDCG@10 excl.", "HR@10 excl.",
            "cold NDCG@10", "train s (cpu s)", "epochs", "inter/s")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r["label"], f"{r['valid']['NDCG@10']:.4f}", f"{r['test']['NDCG@10']:.4f}", f"{r['test']['HR@10']:.4f}",
               f"{r['test_excluding_history']['NDCG@10']:.4f}", f"{r['test_excluding_history']['HR@10']:.4f}",
               f"{r['test_cold']['NDCG@10']:.4f} (n={r['test_cold']['users']})",
               f"{r['train_s']:.0f} ({r['train_cpu_s']:.0f})", str(r["epochs"]), f"{r['interactions_per_s']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)} (or full,title,...)"
    )
    ap.add_argument("--cpu-minutes", type=float, default=15.0, help="CPU-time training budget per variant")
    ap.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget per variant (0 = none)")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="key=value for every variant"
    )
    ap.add_argument("--skip-external", action="store_true", help="do not run implicit ALS")
    ap.add_argument(
        "--refit", action="store_true", help="also measure each model refitted through validation (module doc)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0", help="comma list of seeds; each variant runs once per seed")
    ap.add_argument(
        "--limit-users",
        type=int,
        default=0,
        help="evaluate a seeded sample of N valid/test users (smoke runs)",
    )
    ap.add_argument("--json", action="store_true", help="print all results as JSON")
    ap.add_argument("--out", default=None, help="also append results (JSON lines) to this file")
    ap.add_argument(
        "--save-dir", default=None, help="save each model + ONNX/int8 here and measure them on validation"
    )
    args = ap.parse_args(argv)
    args.names = [ALIASES.get(v.strip(), v.strip()) for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in args.names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    args.seed_list = parse_seeds(args.seeds)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    prep = prepare("amazon-beauty", progress=not args.json)
    if args.limit_users:
        prep = limit_users(prep, args.limit_users)
    cold = cold_slice(prep)
    budget = {"max_cpu_minutes": args.cpu_minutes, "max_minutes": args.minutes, "threads": args.threads,
              "progress": not args.json, "patience": 5}  # fmt: skip
    results: list[dict[str, Any]] = []
    refits: list[dict[str, Any]] | None = [] if args.refit else None
    jobs = [
        (n, {**COMMON, **budget, **NO_HEAD, **VARIANTS[n], **parse_overrides(args.overrides), "seed": seed})
        for n in args.names
        for seed in args.seed_list
    ]
    for name, params in jobs:
        for row in run_variant(name, params, prep, cold, args.save_dir, refits):
            results.append(row)
            _emit(row, args.out)
    if not args.skip_external:
        results.append(run_external(prep, cold))
        _emit(results[-1], args.out)
    protocol = __doc__.split("\n\n")[1]
    if args.limit_users:
        protocol += f" SMOKE RUN: {args.limit_users} sampled valid/test users."
    if args.json:
        json.dump({"protocol": protocol, "results": results, "seeds": args.seed_list, "refit": refits,
                   "summary": seed_summary(results), "published": PUBLISHED}, sys.stdout, indent=1, default=str)  # fmt: skip
        return 0
    print(protocol)
    print(f"data: {prep.data.stats()}; cold-start test users: {len(cold)}")
    print_report(results, args.seed_list)
    if refits:
        print("\n" + refit_table(refits))
    return 0


def print_report(results: list[dict[str, Any]], seeds: list[int]) -> None:
    print(table(results))
    for r in results:
        if "history" in r:
            print(f"{r['label']}: {describe(r.get('valid_reached'))}")
    print(f"\nmean ± sd (ddof=1) over seeds {seeds}:")
    print(summary_table(seed_summary(results)))
    print("\npublished / independent (history not excluded): "
          + "; ".join(f"{k} {v[0]:.4f}/{v[1]:.4f}" for k, v in PUBLISHED.items()))  # fmt: skip
    ext = [r for r in results if r["variant"].startswith("implicit")]
    ours = [r for r in results if not r["variant"].startswith("implicit")]
    if ext and ours:
        best = max(ours, key=lambda r: r["valid"]["NDCG@10"])  # chosen on validation
        ratio = best["interactions_per_s"] / max(ext[0]["interactions_per_s"], 1e-9)
        print(
            f"best on validation: {best['label']}; training throughput ratio soutui/implicit-ALS = {ratio:.3f}"
        )


def _emit(result: dict[str, Any], out: str | None) -> None:
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
