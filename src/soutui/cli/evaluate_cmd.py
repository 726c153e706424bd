"""`soutui evaluate`: full-ranking evaluation of one model, or of every baseline, on a dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from soutui.evaluation.report import SPLITS
    from soutui.models.registry import MODELS

    p = sub.add_parser(
        "evaluate",
        help="fit (or load) a recommender and rank every item for validation and test users",
        description="Full-ranking evaluation: every item in the catalogue is a candidate; ties are pessimistic.",
    )
    p.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    p.add_argument(
        "--model",
        default=None,
        choices=[*MODELS, "all"],
        help="model to evaluate (default popularity, or the one in --checkpoint); 'all' = every baseline",
    )
    p.add_argument("--all-baselines", action="store_true", help="same as --model all")
    p.add_argument("--checkpoint", default=None, help="saved model directory to evaluate instead of fitting")
    p.add_argument("--split", default="loo", choices=sorted(SPLITS), help="loo = leave-one-out (default)")
    p.add_argument("--exclude-history", action="store_true", help="never rank items already in the history")
    p.add_argument("--ks", default="5,10,20", help="cut-offs, comma separated (default 5,10,20)")
    p.add_argument("--head-weight", type=float, default=None, metavar="W",
                   help="score with the co-occurrence head at weight W (0 = the transformer alone; models "
                   "without a head refuse)")  # fmt: skip
    p.add_argument("--params", default=None, help="model parameters as JSON, e.g. '{\"shrink\": 100}'")
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise ConfigError(f"--ks must be positive integers separated by commas, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--ks must be positive integers separated by commas, got {text!r}")
    return ks


def parse_params(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params must be a JSON object ({exc.msg}); got {text!r}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"--params must be a JSON object like '{{\"shrink\": 100}}', got {text!r}")
    return params


def run(args: argparse.Namespace) -> int:
    from soutui.evaluation.report import columns_of, evaluate_baselines, evaluate_model, summary_rows
    from soutui.models.fitting import retain_freed_memory
    from soutui.training.trainer import LoopTrainer

    retain_freed_memory()  # a batch job: scoring reuses its large blocks (models.fitting)
    ks = parse_ks(args.ks)
    params = parse_params(args.params)
    progress = True  # bars and epoch lines go to stderr, --json or not
    trainer = LoopTrainer(progress=progress)  # for models that train with the shared loop
    every = args.all_baselines or args.model == "all"
    model_name = args.model or ("" if args.checkpoint else "popularity")
    variant = {"head_weight": args.head_weight} if args.head_weight is not None else None
    if every and (args.checkpoint or params or variant):
        raise ConfigError(
            "--checkpoint, --params and --head-weight apply to one model; drop them or pick a --model"
        )
    if every:
        results = evaluate_baselines(
            args.dataset, split=args.split, exclude_history=args.exclude_history, ks=ks, store=args.store,
            progress=progress, trainer=trainer,
        )  # fmt: skip
    else:
        results = [
            evaluate_model(
                args.dataset,
                model_name,
                checkpoint=args.checkpoint,
                split=args.split,
                exclude_history=args.exclude_history,
                ks=ks,
                store=args.store,
                params=params,
                progress=progress,
                trainer=trainer,
                variant=variant,
            )  # fmt: skip
        ]
    if args.json:
        print_json(results if every else results[0])
        return 0
    print(f"dataset: {args.dataset}   protocol: {results[0]['protocol']['description']}")
    print(f"stats: {results[0]['dataset_stats']}")
    if variant:
        print("variant: " + ", ".join(f"{k}={v:g}" for k, v in variant.items()))
    for part in ("valid", "test"):
        print(f"\n[{part}]")
        rows = summary_rows(results, part, ks)
        print_table(rows, columns_of(rows))
    return 0
