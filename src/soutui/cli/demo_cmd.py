"""`soutui demo`: the main job, from raw data to a measured, running service in one command.

Import Amazon Beauty into the embedded store, train and evaluate the baselines and the
sequential model under one stated protocol, print the table, build a serving bundle,
and start the storefront on it.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from soutui.cli.common import add_store_arg, print_json, print_table

PUBLISHED = [  # Beauty, leave-one-out, full ranking (see ../shared/data/README.md and docs/evaluation.md)
    {"model": "PopRec (S3-Rec paper)", "HR@10": 0.0152, "NDCG@10": 0.0068},
    {"model": "SASRec (S3-Rec paper; history EXCLUDED)", "HR@10": 0.0605, "NDCG@10": 0.0318},
    {"model": "TIGER (NeurIPS 2023)", "HR@10": 0.0648, "NDCG@10": 0.0384},
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="import Amazon Beauty, train + evaluate, print the table, serve the storefront"
    )
    p.add_argument("--dataset", default="amazon-beauty")
    p.add_argument("--sasrec-minutes", type=float, default=20.0, help="wall-clock budget for SASRec training")
    p.add_argument("--skip-sasrec", action="store_true", help="baselines only (fast)")
    p.add_argument("--no-serve", action="store_true", help="stop after evaluation and the bundle")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    add_store_arg(p)
    p.set_defaults(func=run_demo)


def _say(msg: str, quiet: bool) -> None:
    print(f"==> {msg}", file=sys.stderr if quiet else sys.stdout, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from soutui.config import home_dir
    from soutui.data.datasets import load_dataset
    from soutui.evaluation.report import evaluate_baselines, summary_rows

    quiet = bool(args.json)
    t_start = time.time()
    _say(f"1/5 importing {args.dataset} into {args.store or 'the embedded DuckDB store'}", quiet)
    load_dataset(args.dataset, store_url=args.store, progress=not quiet)

    _say("2/5 training + evaluating the baselines (leave-one-out, full ranking)", quiet)
    from soutui.training.trainer import LoopTrainer

    results = evaluate_baselines(args.dataset, store=args.store, progress=not quiet, trainer=LoopTrainer())

    checkpoint = None
    if not args.skip_sasrec:
        _say(f"3/5 training the sequential model (SASRec-family, budget {args.sasrec_minutes:g} min)", quiet)
        results.append(_train_sasrec(args, quiet))
        checkpoint = results[-1]["path"]
    else:
        _say("3/5 sequential model skipped (--skip-sasrec)", quiet)

    rows = summary_rows(results, "test")
    summary: dict[str, Any] = {
        "dataset": args.dataset,
        "protocol": results[0]["protocol"],
        "results": results,
        "published": PUBLISHED,
    }
    if not quiet:
        print()
        print(f"Test results on {args.dataset} — {results[0]['protocol']['description']}")
        print_table(
            rows, ["model", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "Coverage@20", "users", "train_s"]
        )
        print("\nPublished on the same split (full ranking):")
        print_table(PUBLISHED, ["model", "HR@10", "NDCG@10"])
        print()

    _say("4/5 building the serving bundle (models, ONNX, search index)", quiet)
    from soutui.serving.bundle_build import build_from_dataset

    bundle = build_from_dataset(
        args.dataset, home_dir() / "bundles", store_url=args.store, sasrec=checkpoint,
        progress=lambda m: _say(m, quiet),
    )  # fmt: skip
    summary["bundle"] = str(bundle)
    summary["seconds"] = round(time.time() - t_start, 1)
    if quiet:
        print_json(summary)
    if args.no_serve:
        _say(f"done in {summary['seconds']:.0f}s; bundle at {bundle}", quiet)
        return 0
    _say("5/5 starting the server", quiet)
    return _serve(args, bundle, home_dir())


def _train_sasrec(args: argparse.Namespace, quiet: bool) -> dict[str, Any]:
    import os

    from soutui.training.pipeline import run_training

    # the demo owns the machine while it trains: use every core (serving later uses one)
    params = {"max_minutes": args.sasrec_minutes, "threads": max(1, os.cpu_count() or 1)}
    record = run_training(args.dataset, "sasrec", params=params, progress=not quiet)
    return {
        "model": "sasrec",
        "protocol": record["protocol"],
        "metrics": record["metrics"],
        "train_seconds": record["time"]["train_s"],
        "path": record["path"],
    }


def _serve(args: argparse.Namespace, bundle: Path, home: Path) -> int:
    import os

    from soutui.cli.serve_cmd import serve

    key_file = home / "api_key"
    if not os.environ.get("SOUTUI_API_KEY"):
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        os.environ["SOUTUI_API_KEY"] = key_file.read_text().strip()
        print(f"soutui: API key for write endpoints (X-API-Key) is in {key_file}")
    ns = argparse.Namespace(
        host=args.host, port=args.port, bundle=str(bundle), store=args.store, config=None,
        insecure_dev=False, watch=None, demo=True,  # reads open: a demo on loopback, not a shop
    )  # fmt: skip
    return serve(ns)
