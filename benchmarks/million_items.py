"""Million-item catalogues: import time and peak RSS, SASRec epoch time, serving p99 and RSS.

Protocol (one process per stage, so each peak RSS is that stage's alone):
1. import: `soutui data import generic` of the synthetic shop (benchmarks/synthetic_shop.py:
   `--items` items, each of `--events` sizes) into a fresh DuckDB store, pseudonymisation on
   (the default); wall time and the child's peak RSS (wait4 rusage).
2. train: SASRec, sampled softmax (`n_negatives`) with logQ correction, d = 64, 2 blocks,
   L = 50, batch 256, 1 thread, no titles, on the leave-one-out training split of the largest
   import, for `--train-seconds`; epoch time = batches per epoch x mean step time (an
   extrapolation from the steps run, said so in the output); peak RSS of the process. With
   `--train-epochs N` it trains N whole epochs instead (no time budget) and reports each
   epoch's measured wall and CPU seconds from the training record.
3. serve: the trained model exported to ONNX in a bundle; RecService answers /recommend for
   `--requests` users (in-process, one thread, no HTTP) with the ANN path (serving/ann.py,
   IVF-Flat) and with the exact full path; p50 / p99 latency, RSS after serving, index build
   time, and recall@100 of the ANN path against the exact scores on those users.

    .venv/bin/python benchmarks/million_items.py --items 1000000 --events 1000000,3000000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SASREC = {"loss": "sampled_softmax", "n_negatives": 1024, "d_model": 64, "n_layers": 2, "n_heads": 2,
          "max_len": 50, "batch_size": 256, "use_time": False, "cooc_neighbors": 0, "threads": 1,
          "cold_item_reset": False, "progress": False, "epochs": 1000, "patience": 1000}  # fmt: skip


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[:4]} failed with {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, out


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stage_import(args: argparse.Namespace, home: Path) -> list[dict[str, Any]]:
    rows = []
    for n in [int(x) for x in args.events.split(",")]:
        shop = home / f"shop-{args.items}-{n}"
        if not (shop / "events.parquet").exists():
            gen = [sys.executable, str(HERE / "synthetic_shop.py"), "--items", str(args.items), "--events", str(n),
                   "--out", str(shop)]  # fmt: skip
            subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
        env = {**os.environ, "SOUTUI_HOME": str(home / f"store-{n}")}
        cmd = [sys.executable, "-m", "soutui.cli", "data", "import", "generic", "--events", str(shop / "events.parquet"),
               "--items", str(shop / "items.parquet"), "--name", "synth", "--pseudonym-key-file", str(home / "key"),
               "--json"]  # fmt: skip
        load = Path("/proc/loadavg").read_text().split()[0]
        wall, peak, out = run_measured(cmd, env)
        report = json.loads(out)
        rows.append({"items": args.items, "events": n, "import_s": round(wall, 1), "peak_rss_mib": round(peak),
                     "events_kept": report["rows_kept"]["events"], "load_before": load})  # fmt: skip
        print(
            f"import {n:,} events x {args.items:,} items: {wall:.0f} s, peak RSS {peak:,.0f} MiB",
            file=sys.stderr,
        )
    return rows


def stage_train(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from soutui.training.pipeline import build_model, prepare
    from soutui.training.trainer import LoopTrainer

    torch.set_num_threads(1)
    os.environ["SOUTUI_HOME"] = str(home / f"store-{args.train_events}")
    t0 = time.perf_counter()
    prep = prepare("synth", encoder="none", progress=False)
    load_s, load_peak = time.perf_counter() - t0, peak_rss_mib()
    steps: list[float] = []

    class Timed(LoopTrainer):
        def train(self, model, net, batches, n_batches, cfg, valid, **kw):  # type: ignore[no-untyped-def]
            def timed(rng: np.random.Generator):  # type: ignore[no-untyped-def]
                for batch in batches(rng):
                    steps.append(time.perf_counter())
                    yield batch

            self.n_batches = n_batches
            return super().train(model, net, timed, n_batches, cfg, valid, **kw)

    trainer = Timed(progress=False)
    budget = {"epochs": args.train_epochs} if args.train_epochs else {"max_minutes": args.train_seconds / 60}
    model = build_model("sasrec", {**SASREC, **budget}, trainer)
    model.fit(prep.split.train, None)
    gaps = np.diff(steps[5:])  # the first steps warm up
    step_s = float(np.median(gaps)) if len(gaps) else float("nan")
    out = {"items": prep.data.n_items, "events": args.train_events, "users": prep.data.n_users,
           "train_interactions": prep.split.train.n_interactions, "load_s": round(load_s, 1),
           "load_peak_rss_mib": round(load_peak), "steps_run": len(steps), "batches_per_epoch": trainer.n_batches,
           "median_step_s": round(step_s, 4), "epoch_s_extrapolated": round(step_s * trainer.n_batches, 1),
           "peak_rss_mib": round(peak_rss_mib()), "params": {**SASREC, **budget}}  # fmt: skip
    if args.train_epochs:  # whole epochs: measured, not extrapolated
        rows = (model.training_report() or {}).get("history", [])  # seconds since the fit began
        walls = np.diff([0.0, *(r["seconds"] for r in rows)])
        cpus = np.diff([0.0, *(r["cpu_seconds"] for r in rows)])
        out["epochs_measured"] = [{"epoch": i + 1, "wall_s": round(float(w), 1), "cpu_s": round(float(c), 1)}
                                  for i, (w, c) in enumerate(zip(walls, cpus, strict=True))]  # fmt: skip
    model.save(home / "model")
    return out


def stage_serve(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    import dataclasses

    import numpy as np
    import pandas as pd

    from soutui.models.registry import load_model
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.serving.ann import AnnConfig
    from soutui.serving.bundle_build import catalogue_in_index_order, sasrec_onnx_writer, write_bundle
    from soutui.serving.service import RecService
    from soutui.serving.settings import ServeSettings

    store = home / f"store-{args.train_events}"
    os.environ["SOUTUI_HOME"] = str(store)
    model = load_model(home / "model")
    assert isinstance(model, SASRecRecommender) and model.item_ids_ is not None, type(model)
    items = pd.read_parquet(home / f"shop-{args.items}-{args.train_events}" / "items.parquet")
    t0 = time.perf_counter()
    path = write_bundle(home / "bundles", "synth", catalogue_in_index_order(items, model.item_ids_), {}, "sasrec",
                        onnx_models={"sasrec": sasrec_onnx_writer(model)})  # fmt: skip
    bundle_s = time.perf_counter() - t0
    del model, items
    base = ServeSettings(bundle=str(path), bundles_dir=str(path.parent), store="", insecure_dev=True,
                         event_log=str(home / "events.jsonl"), flush_interval_s=0.0,
                         pseudonym_key_file=str(home / "key"))  # fmt: skip
    out: dict[str, Any] = {"bundle_build_s": round(bundle_s, 1)}
    for name, cfg in (("ann", AnnConfig(min_items=1)), ("exact", AnnConfig(min_items=0))):
        rss0 = rss_mib()
        t0 = time.perf_counter()
        svc = RecService(dataclasses.replace(base, ann=cfg))
        start_s = time.perf_counter() - t0
        users = [u for u, dq in list(svc.histories.recent.items())[: args.requests * 3] if len(dq) >= 2]
        users = users[: args.requests]
        times = []
        for u in users:
            t = time.perf_counter()
            svc.recommend(u, k=10)
            times.append(time.perf_counter() - t)
        ms = np.array(times[10:]) * 1000  # the first calls warm caches
        out[name] = {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                     "p99_ms": round(float(np.percentile(ms, 99)), 2), "start_s": round(start_s, 1),
                     "rss_mib": round(rss_mib()), "rss_added_mib": round(rss_mib() - rss0)}  # fmt: skip
        if name == "ann":
            retriever = svc.bundle.retrievers["sasrec"]
            out[name]["index"] = retriever.stats()
            out["recall_at_100"] = recall(svc, users[: args.recall_users])
        svc.close()
        del svc
    return out


def recall(svc: Any, users: list[str]) -> float:
    """Top 100 of the ANN path vs top 100 of the exact full scores, mean over `users`."""
    import numpy as np

    b = svc.bundle
    found = []
    for u in users:
        hist, times, _, _ = svc._user_history(b, u)
        approx = svc.score_history(b, "sasrec", hist, times)
        exact = b.models["sasrec"].score([hist], [times])[0]
        top = np.argpartition(-exact, 100)[:100]
        found.append(len(np.intersect1d(top, np.argpartition(-approx, 100)[:100])) / 100)
    return round(float(np.mean(found)), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--events", default="1000000,3000000", help="event counts to import (comma-separated)")
    ap.add_argument(
        "--train-events", type=int, default=0, help="which import to train on (default: the largest)"
    )
    ap.add_argument("--train-seconds", type=float, default=120.0)
    ap.add_argument("--train-epochs", type=int, default=0, help="train whole epochs (measured) instead of seconds")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--recall-users", type=int, default=50)
    ap.add_argument("--home", default="/tmp/soutui-million")
    ap.add_argument("--stages", default="import,train,serve")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stage", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.train_events = args.train_events or max(int(x) for x in args.events.split(","))
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    if args.stage:  # a child: one stage, its figures as JSON on stdout
        fn = {"train": stage_train, "serve": stage_serve}[args.stage]
        print(json.dumps(fn(args, home)))
        return 0
    key = home / "key"
    if not key.exists():
        key.write_text(os.urandom(24).hex())
    report: dict[str, Any] = {
        "protocol": __doc__.split("\n\n")[1],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    stages = args.stages.split(",")
    if "import" in stages:
        report["import"] = stage_import(args, home)
    for stage in ("train", "serve"):
        if stage in stages:
            argv = [a for a in sys.argv[1:] if a != "--json"]
            wall, peak, out = run_measured([sys.executable, __file__, *argv, "--stage", stage])
            report[stage] = {
                **json.loads(out),
                "stage_wall_s": round(wall, 1),
                "stage_peak_rss_mib": round(peak),
            }
            print(f"{stage}: {json.dumps(report[stage])}", file=sys.stderr)
    report["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(report, indent=1) if args.json else json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
