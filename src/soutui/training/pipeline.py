"""From a dataset name to a trained, evaluated, self-describing run directory.

`run_training` is what `soutui train` calls: load the dataset, leave-one-out split,
build item content (title embeddings, attributes, category, brand, price), fit with
the shared loop (early stopping on validation NDCG@10), evaluate test with full ranking
(history kept and excluded), save the model (+ its served form, e.g. the ONNX scorer)
and write record.json. Run layout (SASRec):

    <run>/model.json, sasrec.pt, items.json   the loadable model (registry.load_model)
    <run>/sasrec.onnx, sasrec.onnx.json       the ONNX Runtime scorer
    <run>/ckpt/last.pt                        training checkpoint (resume)
    <run>/config.toml, record.json            what ran and how it scored
"""

from __future__ import annotations

import datetime as dt
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from soutui.config import ConfigError, MissingFileError, home_dir
from soutui.data.sequences import LeaveOneOut, SequenceData, leave_one_out
from soutui.features.content import ItemContent, titles_for
from soutui.models.base import Recommender, Trainer
from soutui.models.registry import model_class
from soutui.training.records import data_fingerprint, machine_info, write_record
from soutui.training.trainer import LoopTrainer

KS = (5, 10, 20)


@dataclass
class Prepared:
    """A dataset ready to train on: sequences, the split, and per-item content."""

    dataset: str
    data: SequenceData
    split: LeaveOneOut
    content: ItemContent


def prepare(
    dataset: str,
    encoder: str = "minilm",
    store_url: str | None = None,
    data_dir: str | None = None,
    progress: bool = True,
) -> Prepared:
    """Load + split a dataset and compute (cached) item content aligned with its item vocabulary."""
    from soutui.data.datasets import load_dataset
    from soutui.features.embeddings import embed_texts

    items, events = load_dataset(dataset, store_url=store_url, data_dir=data_dir, progress=progress)
    data = SequenceData.from_events(events, items)
    if data.n_users == 0:
        raise ConfigError(f"dataset {dataset!r} has no interaction events to train on")
    titles = titles_for(items, data.item_ids)
    text = (
        embed_texts(titles, encoder, progress=progress) if titles is not None and encoder != "none" else None
    )
    return Prepared(
        dataset, data, leave_one_out(data), ItemContent.from_items(items, data.item_ids, text=text)
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict; values parsed as TOML (numbers, booleans, "strings"), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = (s.strip() for s in pair.split("=", 1))
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


def load_params(config: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if config:
        path = Path(config)
        if not path.exists():
            raise MissingFileError(f"config file {path} does not exist")
        with open(path, "rb") as fh:
            try:
                params = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    params.update(parse_overrides(overrides or []))
    return params


def to_toml(params: dict[str, Any]) -> str:
    """Flat dict -> TOML text (the config format `soutui train --config` reads back)."""
    return tomli_w.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())})


def default_run_dir(dataset: str, model: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return home_dir() / "runs" / f"{dataset}-{model}-{stamp}"


def latest_unfinished(dataset: str, model: str) -> Path | None:
    """Most recent run of (dataset, model) with a checkpoint but no record: the one to resume."""
    runs = sorted((home_dir() / "runs").glob(f"{dataset}-{model}-*"))
    for r in reversed(runs):
        if (r / "ckpt" / "last.pt").exists() and not (r / "record.json").exists():
            return r
    return None


def build_model(model: str, params: dict[str, Any], trainer: Trainer | None = None) -> Recommender:
    """Registry model `model` with `params`, handed `trainer` (a plain LoopTrainer by default)."""
    return model_class(model)(**params).use_trainer(trainer or LoopTrainer())


def evaluate_splits(
    rec: Recommender, prep: Prepared, test: bool = True, exclude_history: bool = True, progress: bool = False
) -> dict[str, dict[str, float]]:
    from soutui.evaluation.protocol import evaluate_full_ranking

    n = prep.data.n_items
    out = {"valid": evaluate_full_ranking(rec, prep.split.valid, n, KS, progress=progress)}
    if test:
        out["test"] = evaluate_full_ranking(rec, prep.split.test, n, KS, progress=progress)
        if exclude_history:
            out["test_excluding_history"] = evaluate_full_ranking(
                rec, prep.split.test, n, KS, exclude_history=True, progress=progress
            )
    return out


def evaluate_ablations(rec: Recommender, prep: Prepared) -> dict[str, dict[str, Any]]:
    """Valid and test figures (same protocol) of each variant the model names in `ablations()`,
    e.g. SASRec's transformer alone (head weight 0)."""
    out: dict[str, dict[str, Any]] = {}
    for name, settings in rec.ablations().items():
        with rec.variant(**settings):
            out[name] = {"variant": settings, **evaluate_splits(rec, prep, exclude_history=False)}
    return out


def make_record(
    run_dir: Path,
    dataset: str,
    model: str,
    params: dict[str, Any],
    prep: Prepared,
    metrics: dict[str, dict[str, float]],
    training: dict[str, Any] | None,
    times: dict[str, Any],
) -> dict[str, Any]:
    """The experiment record: what ran, on which data, how it scored, how long, on what machine."""
    epochs = int(training["epoch"]) if training else 1
    return {
        "run": run_dir.name,
        "dataset": dataset,
        "model": model,
        "params": params,
        "data_fingerprint": data_fingerprint(prep.data),
        "data": prep.data.stats(),
        "protocol": "leave-one-out (last item test, second-last validation); full ranking over all "
        "items; pessimistic ties; early stopping on validation NDCG@10 only",
        "metrics": metrics,
        "training": training,
        "time": times,
        "interactions_per_s": round(
            prep.split.train.n_interactions * epochs / max(times["train_s"], 1e-9), 1
        ),
        "machine": machine_info(
            training.get("device", "cpu") if training else "cpu",
            training.get("threads") if training else None,
        ),
        "path": str(run_dir),
    }


def run_training(
    dataset: str,
    model: str = "sasrec",
    params: dict[str, Any] | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    onnx: bool = True,
    prep: Prepared | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate, save; returns the experiment record (also written to record.json).

    `onnx`: also write the model's served form (SASRec: the ONNX scorer) when it has one."""
    params = dict(params or {})
    run_dir = Path(output) if output else (latest_unfinished(dataset, model) if resume else None)
    if run_dir is None:
        if resume:
            raise ValueError(
                f"--resume: no unfinished {dataset}-{model} run under {home_dir() / 'runs'}; pass --output"
            )
        run_dir = default_run_dir(dataset, model)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume and (run_dir / "config.toml").exists():  # resume with the config the run started with
        with open(run_dir / "config.toml", "rb") as fh:
            params = tomllib.load(fh)
    (run_dir / "config.toml").write_text(to_toml(params))
    prep = prep or prepare(dataset, progress=progress)
    trainer = LoopTrainer(checkpoint_dir=run_dir / "ckpt", resume=resume, progress=progress)
    rec = build_model(model, params, trainer)
    t0 = time.perf_counter()
    rec.fit(prep.split.train, prep.split.valid, content=prep.content)
    train_s = time.perf_counter() - t0
    rec.save(run_dir)
    if onnx:
        rec.export_served(run_dir)
    t1 = time.perf_counter()
    metrics = evaluate_splits(rec, prep, progress=progress)
    ablations = evaluate_ablations(rec, prep)
    times = {"train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - t1, 1),
             "finished": dt.datetime.now().isoformat(timespec="seconds")}  # fmt: skip
    record = make_record(run_dir, dataset, model, params, prep, metrics, rec.training_report(), times)
    record["ablations"] = ablations
    record["warnings"] = list((record["training"] or {}).get("warnings", []))
    if (record["training"] or {}).get("privacy"):  # DP-SGD: achieved epsilon, delta, accountant, unit
        record["privacy"] = record["training"]["privacy"]
    write_record(run_dir, record)
    return record
