"""`soutui retrain`: train a candidate on every event in the store, gate it against the serving bundle, publish."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from soutui.cli.common import add_store_arg, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "retrain",
        help="retrain on every event (live ones included), gate against the serving bundle, publish if not worse",
        description="Holds out the last time window of events, trains a candidate (warm-started from the serving "
        "bundle's checkpoint) on the events before it, and scores candidate and serving model on the window "
        "(NDCG@10, full ranking). If the candidate is not worse than serving by more than the margin, it refits "
        "the candidate's recipe on every event and writes a new bundle, which `soutui serve --watch` picks up. Every decision is appended "
        "to $SOUTUI_HOME/runs/retrain-<dataset>.jsonl. Schedule it with cron or a systemd timer (docs/retrain.md).",
    )
    p.add_argument("--dataset", required=True, help="dataset name in the store")
    p.add_argument("--model", default=None, help="bundle model to retrain (default: the bundle's default)")
    p.add_argument(
        "--bundle", default=None, help="serving bundle to gate against (default: newest under --bundles-dir)"
    )
    p.add_argument("--bundles-dir", default=None, help="where bundles live (default: $SOUTUI_HOME/bundles)")
    p.add_argument("--config", default=None, help="TOML file with a [retrain] table (or flat retrain keys)")
    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "--window-days", type=float, default=None, help="held-out window: the last N days (default 7)"
    )
    window.add_argument(
        "--window-frac", type=float, default=None, help="held-out window: this share of the time span"
    )
    p.add_argument(
        "--margin", type=float, default=None, help="NDCG@10 the candidate may lose and still be promoted"
    )
    p.add_argument(
        "--encoder", default=None, help="title encoder for item content (default minilm; none = no titles)"
    )
    p.add_argument("--cold", action="store_true", help="train the candidate from scratch (no warm start)")
    p.add_argument("--no-refit", action="store_true",
                   help="on promotion, run the early-stopped recipe on every event again instead of refitting "
                   "the candidate's recipe (its epoch count) on every event, each user's newest included")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter for the candidate, e.g. --set max_minutes=10 (repeatable)")  # fmt: skip
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the decision record as JSON")
    p.set_defaults(func=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    from soutui.config import load_toml, to_dict
    from soutui.serving.retrain_bundle import retrain
    from soutui.training.pipeline import parse_overrides
    from soutui.training.retrain import RetrainConfig, retrain_config

    values: dict[str, Any] = to_dict(load_toml(RetrainConfig, args.config, "retrain")) if args.config else {}
    flags = {"window_days": args.window_days, "window_frac": args.window_frac, "margin": args.margin,
             "encoder": args.encoder}  # fmt: skip
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.window_frac is not None:
        values["window_days"] = 0.0
    if args.cold:
        values["warm_start"] = False
    if args.no_refit:
        values["refit"] = False
    cfg = retrain_config(values)
    record = retrain(
        args.dataset,
        cfg,
        parse_overrides(args.overrides),
        args.model,
        args.bundle,
        args.bundles_dir,
        args.store,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    if args.json:
        print_json(record)
    elif record.get("skipped"):
        print(f"not promoted: {record['reason']}")
    else:
        c, s = record["candidate"], record["serving"]
        print(f"window from {record['window']['cutoff_utc']}: {record['window']['targets']} targets")
        print(f"candidate NDCG@10 {c['NDCG@10']:.4f} HR@10 {c['HR@10']:.4f}")
        print(f"serving   NDCG@10 {s['NDCG@10']:.4f} HR@10 {s['HR@10']:.4f} ({record['serving_bundle']})")
        print(
            ("promoted: " + str(record["bundle"]))
            if record["promoted"]
            else f"not promoted: {record['reason']}"
        )
    return 0
