"""Evaluation runs end to end: dataset -> sequences -> split -> fit/load -> full-ranking report.

`evaluate_model` is the library call behind `soutui evaluate` and the demo's baseline
table; it returns one JSON-able dict that always carries its protocol, so a number
never travels without the description of how it was measured. Models that train with
the shared epoch loop need a trainer (soutui.training.trainer.LoopTrainer) handed in by
the caller, since evaluation sits below training.
"""

from __future__ import annotations

import time
from typing import Any

from soutui.config import ConfigError
from soutui.data.sequences import LeaveOneOut, SequenceData, leave_one_out, temporal_split
from soutui.evaluation.protocol import DEFAULT_KS, RankingProtocol, evaluate_full_ranking
from soutui.features.content import ItemContent, titles_for
from soutui.models.base import Recommender, Trainer
from soutui.models.registry import MODELS, load_model, model_class

SPLITS: dict[str, str] = {
    "loo": "leave-one-out (last item test, second-last validation)",
    "temporal": "global temporal split (events after the 80% / 90% time quantiles: validation / test)",
}
BASELINES: tuple[str, ...] = ("popularity", "recent-popularity", "itemknn", "mlp")


def make_split(data: SequenceData, split: str) -> LeaveOneOut:
    if split == "loo":
        return leave_one_out(data)
    if split == "temporal":
        return temporal_split(data)
    raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")


def fit_model(
    name: str, split: LeaveOneOut, content: ItemContent | None = None, params: dict[str, Any] | None = None,
    trainer: Trainer | None = None,
) -> Recommender:  # fmt: skip
    """Build registry model `name` and fit it on the TRAINING part only (valid: early stopping)."""
    try:
        model = model_class(name)(**(params or {}))
    except TypeError as exc:  # a mistyped parameter name
        raise ConfigError(f"bad parameters {params} for model {name!r}: {exc}") from None
    if trainer is not None:
        model.use_trainer(trainer)
    return model.fit(split.train, split.valid, content=content)


def _checkpoint_for(checkpoint: str, data: SequenceData, model_name: str, dataset: str) -> Recommender:
    """Load `checkpoint`, refusing one trained on another catalogue or holding another model."""
    model = load_model(checkpoint)
    if model.n_items_ != data.n_items:
        raise ConfigError(
            f"checkpoint {checkpoint} was trained on {model.n_items_} items but {dataset or 'the data'} "
            f"has {data.n_items}; evaluate it on the dataset it was trained on"
        )
    if model_name not in ("", model.name):
        raise ConfigError(f"checkpoint {checkpoint} holds a {model.name!r} model, not {model_name!r}")
    return model


def evaluate_sequences(
    data: SequenceData,
    model_name: str,
    *,
    content: ItemContent | None = None,
    split: str = "loo",
    checkpoint: str | None = None,
    exclude_history: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    params: dict[str, Any] | None = None,
    progress: bool = False,
    dataset: str = "",
    trainer: Trainer | None = None,
    variant: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Split `data`, fit (or load `checkpoint`), rank every item for VALID and TEST users;
    `variant`: score as that variant of the model (e.g. {"head_weight": 0}, see Recommender.variant)."""
    if data.n_users == 0 or not data.n_interactions:
        raise ConfigError(f"dataset {dataset or '(given)'!r} has no interactions to evaluate on")
    parts = make_split(data, split)
    start = time.perf_counter()
    if checkpoint:
        model = _checkpoint_for(checkpoint, data, model_name, dataset)
        train_seconds = None
    else:
        model = fit_model(model_name, parts, content, params, trainer)
        train_seconds = round(time.perf_counter() - start, 3)
    protocol = RankingProtocol(split=SPLITS[split], exclude_history=exclude_history)
    with model.variant(**(variant or {})):
        metrics = {
            part.name: evaluate_full_ranking(
                model, part, data.n_items, ks, exclude_history, progress=progress
            )
            for part in (parts.valid, parts.test)
        }
    return {
        "dataset": dataset,
        "model": model.name,
        "variant": variant or {},
        "protocol": {
            "split": split,
            "candidates": protocol.candidates,
            "exclude_history": exclude_history,
            "ties": "pessimistic",
            "description": protocol.describe(),
        },
        "dataset_stats": {
            **data.stats(),
            "train_interactions": parts.train.n_interactions,
            "valid_users": len(parts.valid),
            "test_users": len(parts.test),
        },
        "metrics": metrics,
        "train_seconds": train_seconds,
        "params": model.params(),
    }


def load_sequences(
    dataset: str, store: str | None = None, progress: bool = False, encoder: str = "minilm"
) -> tuple[SequenceData, ItemContent | None]:
    """The dataset's user sequences (over its whole catalogue) and its item content, with
    title embeddings from `encoder` (cached; "none" = no text)."""
    from soutui.data.datasets import load_dataset  # late: the data layer imports importers
    from soutui.features.embeddings import embed_texts

    items, events = load_dataset(dataset, store_url=store, progress=progress)
    if events is None or not len(events):
        raise ConfigError(
            f"dataset {dataset!r} has no interactions (events) to evaluate on; "
            "recommendation needs user events (search judgments alone are not enough)"
        )
    data = SequenceData.from_events(events, items)
    if data.n_users == 0:  # before the (slow) title embeddings
        raise ConfigError(f"dataset {dataset!r} has no interactions (user events) to evaluate on")
    titles = titles_for(items, data.item_ids) if encoder != "none" else None
    text = embed_texts(titles, encoder, progress=progress) if titles is not None else None
    return data, ItemContent.from_items(items, data.item_ids, text=text)


def evaluate_model(
    dataset: str,
    model_name: str,
    *,
    checkpoint: str | None = None,
    split: str = "loo",
    exclude_history: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    store: str | None = None,
    params: dict[str, Any] | None = None,
    progress: bool = False,
    trainer: Trainer | None = None,
    variant: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One model on one dataset, full ranking on valid and test (see `evaluate_sequences`);
    `model_name` "" = whichever model `checkpoint` holds."""
    if model_name not in MODELS and not (checkpoint and model_name == ""):
        raise ConfigError(f"unknown model {model_name!r}; choose one of {sorted(MODELS)} or 'all'")
    data, content = load_sequences(dataset, store, progress)
    return evaluate_sequences(
        data, model_name, content=content, split=split, checkpoint=checkpoint,
        exclude_history=exclude_history, ks=ks, params=params, progress=progress, dataset=dataset,
        trainer=trainer, variant=variant,
    )  # fmt: skip


def evaluate_baselines(
    dataset: str,
    *,
    models: tuple[str, ...] = BASELINES,
    split: str = "loo",
    exclude_history: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    store: str | None = None,
    progress: bool = False,
    trainer: Trainer | None = None,
) -> list[dict[str, Any]]:
    """Every baseline on one dataset under one protocol (loads the data once)."""
    data, content = load_sequences(dataset, store, progress)
    return [
        evaluate_sequences(
            data,
            m,
            content=content,
            split=split,
            exclude_history=exclude_history,
            ks=ks,
            progress=progress,
            dataset=dataset,
            trainer=trainer,
        )  # fmt: skip
        for m in models
    ]


def leaky_popularity(
    data: SequenceData, split: str = "loo", ks: tuple[int, ...] = DEFAULT_KS
) -> dict[str, Any]:
    """Popularity counted over ALL interactions, test targets included. LEAKY, for explaining
    published PopRec figures only; never report it as a result of this project."""
    from soutui.models.popularity import Popularity

    parts = make_split(data, split)
    model = Popularity().fit(data)  # deliberately sees valid + test interactions
    return {
        "model": "popularity (LEAKY: counts include valid/test interactions)",
        "metrics": {
            p.name: evaluate_full_ranking(model, p, data.n_items, ks) for p in (parts.valid, parts.test)
        },
    }


def summary_rows(
    results: list[dict[str, Any]], part: str = "test", ks: tuple[int, ...] = (10, 20)
) -> list[dict]:
    """Flat rows (model, HR@k, NDCG@k ..., coverage, seconds) for a printed table."""
    rows = []
    for r in results:
        m = r["metrics"][part]
        row: dict[str, Any] = {"model": r["model"]}
        for k in ks:
            for name in ("HR", "NDCG", "MRR"):
                if f"{name}@{k}" in m:
                    row[f"{name}@{k}"] = float(m[f"{name}@{k}"])
        cov = [key for key in m if key.startswith("Coverage@")]
        if cov:
            row[cov[0]] = float(m[cov[0]])
        row["users"] = m.get("users", "")
        row["train_s"] = "" if r.get("train_seconds") is None else f"{r['train_seconds']:.1f}"
        rows.append(row)
    return rows


def columns_of(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    return cols
