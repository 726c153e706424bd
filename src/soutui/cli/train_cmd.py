"""`soutui train` and `soutui tune`: fit a model into a self-describing run directory, or search its settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from soutui.models.registry import MODELS

    p = sub.add_parser(
        "train",
        help="train a recommender (leave-one-out, early stopping on validation NDCG@10), save a checkpoint",
        description="Train, evaluate (full ranking) and save a run directory with model, ONNX scorer and record.json. "
        "Default output: $SOUTUI_HOME/runs/<dataset>-<model>-<timestamp>/.",
    )
    p.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    p.add_argument(
        "--model", default="sasrec", choices=sorted(MODELS), help="model to train (default sasrec)"
    )
    p.add_argument(
        "--output", default=None, help="run directory (default: a new one under $SOUTUI_HOME/runs)"
    )
    p.add_argument("--config", default=None, help="TOML file of model parameters (flat key = value)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set d_model=128 (repeatable)")  # fmt: skip
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --output (or the latest unfinished run)"
    )
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train data-parallel in N processes (PyTorch DDP through torchrun: gloo on CPU, NCCL on "
                   "GPU); the global batch stays batch_size; rank 0 alone writes the run")  # fmt: skip
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the experiment record as JSON")
    p.set_defaults(func=run_train)

    t = sub.add_parser(
        "tune",
        help="Optuna search on the validation split (never test); resumable; writes the best config as TOML",
    )
    t.add_argument("--dataset", default="amazon-beauty")
    t.add_argument("--model", default="sasrec", help="model to tune (default sasrec)")
    t.add_argument("--trials", type=int, default=10, help="trials to add to the study (default 10)")
    t.add_argument(
        "--storage", default=None, help="Optuna storage URL (default sqlite:///$SOUTUI_HOME/tune.db)"
    )
    t.add_argument("--study", default=None, help="study name (default <dataset>-<model>); reuse to resume")
    t.add_argument("--config", default=None, help="TOML of fixed parameters every trial starts from")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed parameter for every trial, e.g. --set max_minutes=5")  # fmt: skip
    t.add_argument("--output", default=None, help="where to write the best config TOML")
    add_store_arg(t)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run_tune)


def run_train(args: argparse.Namespace) -> int:
    from soutui.models.registry import model_class
    from soutui.training import distributed
    from soutui.training.pipeline import load_params, prepare, run_training

    params = load_params(args.config, args.overrides)
    model_class(args.model)(**params)  # check the parameters before loading any data
    if distributed.launched_by_torchrun():
        return _ddp_worker(args, params)
    if args.nproc is not None:
        return _launch_ddp(args)
    # progress (tqdm bars, one line per epoch with loss and validation NDCG@10) goes to stderr,
    # so --json keeps stdout for the record alone
    prep = prepare(args.dataset, store_url=args.store, progress=True)
    rec = run_training(
        args.dataset, args.model, params, args.output, args.resume, not args.no_onnx, prep, True
    )
    for warning in rec.get("warnings", []):
        print(f"soutui: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(rec)
    else:
        _print_record(rec)
    return 0


def _launch_ddp(args: argparse.Namespace) -> int:
    """Re-run this command under torchrun in --nproc processes, into one run directory chosen here
    (each rank would otherwise stamp its own)."""
    import subprocess

    from soutui.training.distributed import torchrun_command
    from soutui.training.pipeline import default_run_dir, latest_unfinished

    run_dir = args.output or (latest_unfinished(args.dataset, args.model) if args.resume else None)
    if run_dir is None:
        if args.resume:
            raise ConfigError(f"--resume: no unfinished {args.dataset}-{args.model} run; pass --output")
        run_dir = default_run_dir(args.dataset, args.model)
    argv = ["train", "--dataset", args.dataset, "--model", args.model, "--output", str(run_dir)]
    argv += ["--config", args.config] if args.config else []
    argv += [x for o in args.overrides for x in ("--set", o)]
    argv += ["--store", args.store] if args.store else []
    argv += [
        f for f, on in (("--resume", args.resume), ("--no-onnx", args.no_onnx), ("--json", args.json)) if on
    ]
    print(f"soutui: training in {args.nproc} processes (torchrun) into {run_dir}", file=sys.stderr)
    return subprocess.run(torchrun_command(args.nproc, argv), check=False).returncode


def _ddp_worker(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """One torchrun rank: all ranks fit together; rank 0 alone then saves, evaluates and records."""
    from pathlib import Path

    from soutui.training import distributed
    from soutui.training.pipeline import build_model, load_params, prepare, run_training
    from soutui.training.records import write_record

    if not args.output:
        raise ConfigError("a torchrun rank needs --output (soutui train --nproc N picks it)")
    run_dir = Path(args.output)
    if args.resume and (run_dir / "config.toml").exists():  # before rank 0 rewrites it (after main_first)
        params = load_params(run_dir / "config.toml")
    group = distributed.init_from_env()
    try:
        with group.main_first():  # rank 0 imports / embeds first; the others then read its cache
            prep = prepare(args.dataset, store_url=args.store, progress=group.is_main)
        if not group.is_main:
            trainer = _follower_trainer(run_dir / "ckpt", args.resume)
            build_model(args.model, params, trainer).fit(
                prep.split.train, prep.split.valid, content=prep.content
            )
            return 0
        rec = run_training(
            args.dataset, args.model, params, run_dir, args.resume, not args.no_onnx, prep, True
        )
        rec["distributed"] = {"processes": group.world, "backend": "nccl" if group.device != "cpu" else "gloo",
                              "global_batch": "batch_size rows, split across processes"}  # fmt: skip
        write_record(run_dir, rec)
    finally:
        distributed.shutdown()
    if args.json:
        print_json(rec)
    else:
        _print_record(rec)
    return 0


def _follower_trainer(ckpt: Any, resume: bool) -> Any:
    """The trainer of a rank other than 0: it trains in the shared loop (where validation comes
    from rank 0), but skips the validation passes a model makes after the loop (its weights are
    dropped: rank 0 saves its own)."""
    from soutui.training.trainer import LoopTrainer

    class Follower(LoopTrainer):
        def validate(self, model: Any, valid: Any) -> float:
            return 0.0

        def blend_weights(self, parts: Any, valid: Any, weights: Any) -> list[dict[float, float]]:
            return [{float(w): 0.0 for w in weights}]

    return Follower(checkpoint_dir=ckpt, resume=resume, progress=False)


def _print_record(rec: dict[str, Any]) -> None:
    print(f"run: {rec['path']}")
    print(f"protocol: {rec['protocol']}")
    rows = []
    for part, m in rec["metrics"].items():
        rows.append(
            {"split": part, **{k: m.get(k) for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "users")}}
        )
    print_table(rows, ["split", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "users"])
    for name, ab in (rec.get("ablations") or {}).items():
        print(f"{name} ({ab['variant']}): valid NDCG@10 {ab['valid'].get('NDCG@10')}, "
              f"test NDCG@10 {ab['test'].get('NDCG@10')}")  # fmt: skip
    tr = rec.get("training") or {}
    if "head_weight" in tr:
        print(f"co-occurrence head weight {tr['head_weight']:g} (chosen on validation)")
    if tr.get("content_used"):
        print(
            "content used: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in tr["content_used"].items())
        )
    print(f"train {rec['time']['train_s']} s, {tr.get('epoch', '?')} epochs (best {tr.get('best_epoch', '?')}, "
          f"stopped: {tr.get('stopped', '?')}), {rec['interactions_per_s']} interactions/s")  # fmt: skip


def run_tune(args: argparse.Namespace) -> int:
    from soutui.training.pipeline import load_params, prepare
    from soutui.training.tune import tune

    if args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    base = load_params(args.config, args.overrides)
    prep = prepare(args.dataset, store_url=args.store, progress=not args.json)
    out = tune(prep, args.model, args.trials, args.storage, args.study, base, args.output)
    if args.json:
        print_json(out)
    else:
        print(f"study {out['study']} ({out['trials']} trials in {out['storage']})")
        print(f"best validation NDCG@10 = {out['best_value']:.5f}; config written to {out['config']}")
    return 0
