"""`soutui retrain` end to end: read the serving bundle, run the gate, publish a new bundle on promotion.

It lives in serving because it reads and writes bundles; the gate itself (window split,
candidate fit, window metrics, decision) is soutui.training.retrain. A bundle keeps each
model's trainable form beside its served form (`models/<name>/checkpoint/` for ONNX-served
SASRec; a `recommender` entry is trainable as it is), so the next retrain can warm-start.
The new bundle is written with `write_bundle` (atomic rename), so a server running with
`--watch` picks it up whole.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.config import ConfigError, home_dir
from soutui.data.sequences import SequenceData
from soutui.features.content import ItemContent, titles_for
from soutui.models.base import Recommender
from soutui.models.registry import load_model, model_class
from soutui.serving.bundle import RUNTIMES, newest_bundle, verify_bundle
from soutui.serving.bundle_build import (
    CHECKPOINT_DIR,
    LIGHT_MODELS,
    CountPrivacy,
    catalogue_in_index_order,
    data_until,
    write_bundle,
)
from soutui.training.records import append_record
from soutui.training.retrain import RetrainConfig, final_fit, run_gate

ProgressFn = Callable[[str], None]


@dataclass
class Serving:
    """The model a bundle serves under `name`, its catalogue ids and (if kept) its trainable form."""

    path: Path
    manifest: dict[str, Any]
    name: str
    model: Recommender
    item_ids: list[str]
    trainable: Recommender | None

    @property
    def version(self) -> str:
        return f"{self.manifest['dataset']}-{self.manifest['version']}"


def read_serving(bundle: Path, name: str | None = None) -> Serving:
    """Verify `bundle` and load model `name` (default: the bundle's default) in served and trainable form."""
    manifest = verify_bundle(bundle)
    name = name or str(manifest["default_recommender"])
    if name not in manifest["models"]:
        raise ConfigError(f"bundle {bundle} has no model {name!r}; it has {sorted(manifest['models'])}")
    entry = manifest["models"][name]
    model_dir = bundle / entry["dir"]
    served = RUNTIMES[entry.get("runtime", "recommender")](model_dir, entry)
    ids = pd.read_parquet(bundle / "items.parquet", columns=["item_id"])["item_id"].astype(str).tolist()
    trainable: Recommender | None = None
    if (model_dir / CHECKPOINT_DIR / "model.json").is_file():
        trainable = load_model(model_dir / CHECKPOINT_DIR)
    elif entry.get("runtime", "recommender") == "recommender":
        trainable = served
    return Serving(bundle, manifest, name, served, ids, trainable)


def item_content(items: pd.DataFrame, data: SequenceData, encoder: str, progress: bool) -> ItemContent:
    """Titles (embedded with `encoder`, cached) and attributes aligned with `data`'s vocabulary."""
    from soutui.features.embeddings import embed_texts

    titles = titles_for(items, data.item_ids)
    text = (
        embed_texts(titles, encoder, progress=progress) if titles is not None and encoder != "none" else None
    )
    return ItemContent.from_items(items, data.item_ids, text=text)


def decisions_path(dataset: str) -> Path:
    """Where every retrain decision of `dataset` is appended (JSON lines)."""
    return home_dir() / "runs" / f"retrain-{dataset}.jsonl"


def retrain(
    dataset: str,
    cfg: RetrainConfig,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    bundle: str | Path | None = None,
    bundles_dir: str | Path | None = None,
    store_url: str | None = None,
    progress: ProgressFn = print,
) -> dict[str, Any]:
    """Gate a retrained candidate against the serving bundle; on promotion, refit on everything and
    publish a new bundle into `bundles_dir`. Returns the decision (also appended to the records)."""
    started = time.perf_counter()
    root = Path(bundles_dir) if bundles_dir else home_dir() / "bundles"
    serving = read_serving(Path(bundle) if bundle else newest_bundle(root), model)
    if serving.manifest["dataset"] != dataset:
        raise ConfigError(f"bundle {serving.path} serves {serving.manifest['dataset']!r}, not {dataset!r}")
    items, events = read_events(dataset, store_url, cfg.store_wait_s, progress)
    data = SequenceData.from_events(events, items)
    progress(f"{dataset}: {data.n_users} users, {data.n_items} items (bundle {serving.version} has "
             f"{len(serving.item_ids)}), {data.n_interactions} interactions")  # fmt: skip
    until = int(serving.manifest.get("data_until") or 0) or None  # the newest event it learned from
    if until is not None and data_until(data) <= until:
        return _nothing_new(dataset, serving, until, started, progress)
    content = item_content(items, data, cfg.encoder, progress=False)
    cls = model_class(_class_name(serving))
    params = {**(serving.trainable.params() if serving.trainable is not None else {}), **(params or {})}
    previous = serving.trainable if cfg.warm_start else None
    # the candidate saw only the events before the window: it is measured, never published
    record, candidate = run_gate(data, content, (serving.model, serving.item_ids), previous, cls.name, params,
                                 cfg, serving_until=until)  # fmt: skip
    progress(f"gate: candidate NDCG@10={record['candidate']['NDCG@10']:.4f}, serving "
             f"NDCG@10={record['serving']['NDCG@10']:.4f} on {record['window']['targets']} window events: "
             + ("PROMOTE" if record["promoted"] else "keep serving"))  # fmt: skip
    record.update(dataset=dataset, serving_bundle=serving.version, params=params, bundle=None,
                  started_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))  # fmt: skip
    if record["promoted"]:
        t0 = time.perf_counter()
        final, how = final_fit(candidate, cls.name, params, data, content, previous, cfg.refit)
        record["time"]["final_fit_s"] = round(time.perf_counter() - t0, 1)
        record["final_fit"] = {"how": how, "interactions": int(data.n_interactions),
                               "epochs": (final.training_report() or {}).get("epoch")}  # fmt: skip
        progress(f"final fit ({how}) on {data.n_interactions} interactions: {record['time']['final_fit_s']} s")
        path = publish(
            root,
            dataset,
            items,
            data,
            serving.name,
            final,
            record,
            with_search=bool(serving.manifest.get("search")),
        )
        record["bundle"] = str(path)
        progress(f"published {path}")
    record["time"]["total_s"] = round(time.perf_counter() - started, 1)
    append_record(decisions_path(dataset), record)
    return record


def read_events(
    dataset: str, store_url: str | None, wait_s: float, progress: ProgressFn
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, events) from the store. A running server opens the store for a moment every
    flush to append live events; if this read lands in one, wait and retry for up to `wait_s`."""
    from soutui.data.datasets import load_dataset
    from soutui.data.store import StoreLockedError

    deadline, pause = time.monotonic() + wait_s, 0.2
    while True:
        try:
            return load_dataset(dataset, store_url=store_url, progress=False)
        except StoreLockedError as exc:
            if time.monotonic() + pause > deadline:
                raise
            progress(f"store busy ({exc}); retrying in {pause:.1f}s")
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _class_name(serving: Serving) -> str:
    """The registry name of the model to retrain (an ONNX entry names the model it was exported from)."""
    if serving.trainable is not None:
        return serving.trainable.name
    return str(serving.manifest["models"][serving.name].get("class", serving.name))


def _nothing_new(
    dataset: str, serving: Serving, until: int, started: float, progress: ProgressFn
) -> dict[str, Any]:
    """The decision when no event is newer than what the serving bundle learned from: nothing to
    learn from and nothing to judge a candidate on, so no candidate is trained (still recorded)."""
    when = dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="seconds")
    record: dict[str, Any] = {
        "kind": "retrain-gate", "dataset": dataset, "serving_bundle": serving.version, "serving_data_until": until,
        "promoted": False, "skipped": True, "bundle": None,
        "reason": f"no events after {when}, the newest the serving bundle learned from: nothing new to retrain on",
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "time": {"total_s": round(time.perf_counter() - started, 1)},
    }  # fmt: skip
    progress(record["reason"])
    append_record(decisions_path(dataset), record)
    return record


def publish(
    root: Path,
    dataset: str,
    items: pd.DataFrame,
    data: SequenceData,
    name: str,
    model: Recommender,
    decision: dict[str, Any],
    with_search: bool = True,
) -> Path:
    """Write a bundle serving `model` as `name` (the default) beside the light baselines refitted on
    all events; torch models are served as ONNX with their checkpoint kept for the next warm start.

    A model trained with DP-SGD gets a private bundle, as `bundle build` makes one: no item-kNN, and
    popularity (also the search index's) as a private count release composed with the model's budget."""
    catalogue = catalogue_in_index_order(items, data.item_ids)
    models, popularity, privacy = _light_models(data, name, (model.training_report() or {}).get("privacy"))
    with tempfile.TemporaryDirectory(prefix="soutui-served-") as staged:
        onnx: dict[str, Callable[[Path], None]] = {}
        if model.export_served(staged) is not None:  # served in its torch-free form, trainable form beside it
            model.save(Path(staged) / CHECKPOINT_DIR)
            onnx[name] = partial(_copy, Path(staged))
        else:
            models[name] = model
        evaluation = {"dataset": dataset, "protocol": decision["protocol"], "gate": decision, "models": privacy}
        return _write(root, dataset, catalogue, data, models, onnx, name, evaluation, popularity, with_search)


def _light_models(
    data: SequenceData, name: str, private: dict[str, Any] | None
) -> tuple[dict[str, Recommender], np.ndarray, dict[str, Any]]:
    """The baselines served beside `name`, the popularity the search index ranks with, and the
    evaluation's privacy entries ({} unless the model was trained with DP-SGD)."""
    if private:
        from soutui.training.dp_counts import private_popularity

        counts = CountPrivacy()
        pop, record = private_popularity(data, counts.epsilon, float(private["delta"]), counts.max_items)
        privacy = {name: {"privacy": private}, "popularity": {"privacy": record}}
        return {"popularity": pop}, np.maximum(pop.scores_, 0.0), privacy
    models: dict[str, Recommender] = {n: model_class(n)().fit(data) for n in LIGHT_MODELS if n != name}
    counted = np.bincount(np.concatenate(data.sequences), minlength=data.n_items).astype(np.float64)
    return models, counted, {}


def _write(
    root: Path, dataset: str, catalogue: pd.DataFrame, data: SequenceData, models: dict[str, Recommender],
    onnx: dict[str, Callable[[Path], None]], name: str, evaluation: dict[str, Any], popularity: np.ndarray,
    with_search: bool,
) -> Path:  # fmt: skip
    decision = evaluation["gate"]

    def extra(tmp: Path) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data_until": data_until(data),
            "gate": {"candidate": decision["candidate"], "serving": decision["serving"]},
        }
        if with_search:
            from soutui.search.engine import SearchEngine

            SearchEngine.build(catalogue, tmp / "search", popularity=popularity)
            out["search"] = {"dir": "search"}
        return out

    return write_bundle(root, dataset, catalogue, models, name, evaluation, extra, onnx_models=onnx)


def _copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
