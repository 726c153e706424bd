"""Evaluation runs end to end: dataset -> sequences -> split -> fit/load -> full-ranking report.

`evaluate_model` is the library call behind `soutui evaluate` and the demo's baseline
table; it returns one JSON-able dict that always carries its protocol, so a number
never travels without the description of how it was measured.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import pandas as pd

from soutui.data.sequences import LeaveOneOut, SequenceData, leave_one_out, temporal_split
from soutui.evaluation.protocol import DEFAULT_KS, RankingProtocol, evaluate_full_ranking
from soutui.models.base import Recommender
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
    raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")


def fit_model(
    name: str, split: LeaveOneOut, items: pd.DataFrame | None = None, params: dict[str, Any] | None = None,
    progress: bool = False,
) -> Recommender:  # fmt: skip
    """Build registry model `name` and fit it on the TRAINING part only (valid: early stopping)."""
    try:
        model = model_class(name)(**(params or {}))
    except TypeError as exc:  # a mistyped parameter name
        raise ValueError(f"bad parameters {params} for model {name!r}: {exc}") from None
    accepted = inspect.signature(model.fit).parameters
    kwargs: dict[str, Any] = {}
    if "items" in accepted and items is not None:
        kwargs["items"] = items
    if "progress" in accepted:
        kwargs["progress"] = progress
    return model.fit(split.train, split.valid, **kwargs)


def evaluate_sequences(
    data: SequenceData,
    model_name: str,
    *,
    items: pd.DataFrame | None = None,
    split: str = "loo",
    checkpoint: str | None = None,
    exclude_history: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    params: dict[str, Any] | None = None,
    progress: bool = False,
    dataset: str = "",
) -> dict[str, Any]:
    """Split `data`, fit (or load `checkpoint`), rank every item for VALID and TEST users."""
    parts = make_split(data, split)
    start = time.perf_counter()
    if checkpoint:
        model = load_model(checkpoint)
        if model.n_items_ != data.n_items:
            raise ValueError(
                f"checkpoint {checkpoint} was trained on {model.n_items_} items but {dataset or 'the data'} "
                f"has {data.n_items}; evaluate it on the dataset it was trained on"
            )
        if model_name not in ("", model.name):
            raise ValueError(f"checkpoint {checkpoint} holds a {model.name!r} model, not {model_name!r}")
        train_seconds = None
    else:
        model = fit_model(model_name, parts, items, params, progress)
        train_seconds = round(time.perf_counter() - start, 3)
    protocol = RankingProtocol(split=SPLITS[split], exclude_history=exclude_history)
    metrics = {
        part.name: evaluate_full_ranking(model, part, data.n_items, ks, exclude_history, progress=progress)
        for part in (parts.valid, parts.test)
    }
    return {
        "dataset": dataset,
        "model": model.name,
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
    dataset: str, store: str | None = None, progress: bool = False
) -> tuple[SequenceData, pd.DataFrame]:
    """The dataset's user sequences (over its whole catalogue) and its items table."""
    from soutui.data.datasets import load_dataset  # late: the data layer imports importers

    items, events = load_dataset(dataset, store_url=store, progress=progress)
    if events is None or not len(events):
        raise ValueError(f"dataset {dataset!r} has no events to evaluate on")
    return SequenceData.from_events(events, items), items


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
) -> dict[str, Any]:
    """One model on one dataset, full ranking on valid and test (see `evaluate_sequences`)."""
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {sorted(MODELS)} or 'all'")
    data, items = load_sequences(dataset, store, progress)
    return evaluate_sequences(
        data, model_name, items=items, split=split, checkpoint=checkpoint, exclude_history=exclude_history,
        ks=ks, params=params, progress=progress, dataset=dataset,
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
) -> list[dict[str, Any]]:
    """Every baseline on one dataset under one protocol (loads the data once)."""
    data, items = load_sequences(dataset, store, progress)
    return [
        evaluate_sequences(
            data,
            m,
            items=items,
            split=split,
            exclude_history=exclude_history,
            ks=ks,
            progress=progress,
            dataset=dataset,
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
