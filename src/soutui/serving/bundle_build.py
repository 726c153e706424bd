"""Assembling bundles: fit the light baselines, evaluate, add search + ONNX, checksum, publish.

A bundle is assembled in a hidden temporary directory and renamed into place only
when complete, so a watching server never sees half a bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.config import ConfigError
from soutui.data.sequences import LeaveOneOut, SequenceData
from soutui.data.store import StoreError, open_store
from soutui.models.base import Recommender
from soutui.serving.bundle import FORMAT_VERSION, MANIFEST, checksum_tree

ProgressFn = Callable[[str], None]
# inside a served model's directory: its trainable form (e.g. SASRec's PyTorch checkpoint beside the
# ONNX scorer), which the server never reads and `soutui retrain` warm-starts from
CHECKPOINT_DIR = "checkpoint"


def _created() -> str:
    """UTC time to the nanosecond, from ONE clock reading: the seconds and the fraction must agree, or a
    bundle written just after a second boundary sorts before one written just before it."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}"


def _new_version(out_root: Path, dataset: str) -> str:
    """Time to the second + pid; a second bundle from the same process in the same second gets
    a suffix that still sorts after the first (newest = last by name)."""
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid() % 1000:03d}"
    version, n = base, 0
    while (out_root / f"{dataset}-{version}").exists() or (out_root / f".tmp-{dataset}-{version}").exists():
        n += 1
        version = f"{base}-{n}"
    return version


def write_bundle(
    out_root: Path,
    dataset: str,
    items: pd.DataFrame,
    models: dict[str, Recommender],
    default: str,
    evaluation: dict[str, Any] | None = None,
    extra: Callable[[Path], dict[str, Any]] | None = None,
    version: str | None = None,
    onnx_models: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write `<out_root>/<dataset>-<version>/` atomically and return its path.

    `items` must be in model-index order (row i = item index i). `extra(tmp_dir)` may add
    files (e.g. the search index) and returns manifest fields to merge. `onnx_models`
    maps a model name to a function writing its torch-free ONNX scorer into a dir.
    """
    _check_models(len(items), models, default, onnx_models or {})
    privacy = _privacy(models, evaluation)
    if default in privacy:  # a DP bundle: every model private, and the composed total stated
        privacy["total"] = dp_total(privacy, [*models, *(onnx_models or {})])
    version = version or _new_version(Path(out_root), dataset)
    final = Path(out_root) / f"{dataset}-{version}"
    if final.exists():
        raise FileExistsError(f"{final} already exists; pass another --out or version")
    tmp = Path(out_root) / f".tmp-{dataset}-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        items.reset_index(drop=True).to_parquet(tmp / "items.parquet", index=False)
        entries = _save_models(tmp, models, onnx_models or {})
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "version": version,
            "created": _created(),
            "n_items": len(items),
            "default_recommender": default,
            "models": entries,
            "search": None,
            "metrics": {},
        }
        if evaluation is not None:
            (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2, ensure_ascii=False))
            manifest["metrics"] = {
                n: r.get("test", {}) for n, r in evaluation.get("models", {}).items() if isinstance(r, dict)
            }
        if privacy:  # models trained with DP-SGD (or released privately): epsilon, delta, accountant, unit
            manifest["privacy"] = privacy
        if extra is not None:
            manifest.update(extra(tmp))
        manifest["files"] = checksum_tree(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _check_models(
    n_items: int, models: dict[str, Recommender], default: str, onnx_models: dict[str, Callable[[Path], None]]
) -> None:
    """The default is among the models, and every model scores the catalogue's items."""
    if default not in models and default not in onnx_models:
        raise ValueError(f"default recommender {default!r} is not among the models {sorted(models)}")
    for name, m in models.items():
        if int(m.n_items_) != n_items:
            raise ValueError(f"model {name} has {m.n_items_} items but the catalogue has {n_items}")


def _save_models(
    tmp: Path, models: dict[str, Recommender], onnx_models: dict[str, Callable[[Path], None]]
) -> dict[str, dict[str, Any]]:
    """Save each model under `tmp/models/<name>` (its ONNX scorer when it has one); the manifest's
    entries."""
    entries: dict[str, dict[str, Any]] = {}
    for name, m in models.items():
        if name in onnx_models:
            continue
        m.save(tmp / "models" / name)
        entries[name] = {
            "dir": f"models/{name}",
            "runtime": "recommender",
            "class": m.name,
            "params": m.params(),
        }
    for name, write in onnx_models.items():
        write(tmp / "models" / name)
        entries[name] = {"dir": f"models/{name}", "runtime": "onnx", "class": name}
    return entries


def _privacy(models: dict[str, Recommender], evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """{model name: its training record's "privacy"} for the models trained with DP-SGD."""
    found = {n: r["privacy"] for n, r in (evaluation or {}).get("models", {}).items()
             if isinstance(r, dict) and r.get("privacy")}  # fmt: skip
    for name, m in models.items():
        p = (m.training_report() or {}).get("privacy")
        if p:
            found[name] = p
    return found


def dp_total(privacy: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The composed privacy of a bundle whose default model is private; refuses any model that is not
    (a model fitted outside DP-SGD and the count mechanism would void the guarantee, docs/privacy.md)."""
    from soutui.training.dp_counts import compose

    public = sorted(n for n in names if n not in privacy)
    if public:
        raise ValueError(
            f"the default model was trained with DP-SGD but {public} were not: a DP bundle ships only private "
            "models (leave them out, or release popularity through soutui.training.dp_counts)"
        )
    return compose({n: privacy[n] for n in names})


def checkpoint_privacy(checkpoint: str | Path) -> dict[str, Any] | None:
    """The "privacy" a saved model's training.json records (None: not trained with DP-SGD)."""
    path = Path(checkpoint) / "training.json"
    if not path.exists():
        return None
    p = json.loads(path.read_text()).get("privacy")
    return p if isinstance(p, dict) else None


def catalogue_in_index_order(items: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """Items reordered to the model vocabulary; ids seen only in events get a bare row."""
    from soutui.data.schema import conform

    items = items.drop_duplicates("item_id")
    items.index = pd.Index(items["item_id"].astype(str))
    out = items.reindex([str(x) for x in item_ids])
    out["item_id"] = [str(x) for x in item_ids]
    return conform(out.reset_index(drop=True), "items")


def plot_metrics(evaluation: dict[str, Any], out: Path, ks: tuple[int, ...] = (10, 20)) -> list[str]:
    """Bar charts of HR@k / NDCG@k per model on the test split, as SVG; returns relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    models = [n for n, r in evaluation["models"].items() if "test" in r]
    paths = []
    for metric in ("HR", "NDCG"):
        fig, ax = plt.subplots(figsize=(5, 3))
        width = 0.8 / len(ks)
        for j, k in enumerate(ks):
            vals = [evaluation["models"][m]["test"].get(f"{metric}@{k}", 0.0) for m in models]
            ax.bar(np.arange(len(models)) + j * width, vals, width, label=f"{metric}@{k}")
        ax.set_xticks(np.arange(len(models)) + width * (len(ks) - 1) / 2, models)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} on the test split (full ranking)")
        ax.legend()
        fig.tight_layout()
        name = f"{metric.lower()}.svg"
        fig.savefig(out / name)
        plt.close(fig)
        paths.append(f"plots/{name}")
    return paths


LIGHT_MODELS = ("popularity", "itemknn")


@dataclass(frozen=True)
class CountPrivacy:
    """How `bundle build` releases popularity when the served model was trained with DP-SGD: a Gaussian
    mechanism on per-user bounded counts (soutui.training.dp_counts), at this epsilon and the model's delta."""

    epsilon: float = 1.0
    delta: float = 1e-5
    max_items: int = 20  # distinct items a user may add 1 to (L2 sensitivity sqrt(max_items))


def build_from_dataset(
    dataset: str,
    out_root: Path,
    store_url: str | None = None,
    sasrec: str | None = None,
    with_search: bool = True,
    progress: ProgressFn = print,
    counts: CountPrivacy = CountPrivacy(),
    refit: bool = False,
) -> Path:
    """The `soutui bundle build` pipeline: fit light baselines, evaluate (leave-one-out, full
    ranking), refit them on all data for serving, add SASRec (+ONNX) and search, publish.

    SASRec is served as its checkpoint was trained and measured, unless `refit`: then its recipe is
    retrained on all interactions for serving (`SASRecRecommender.refit`); the figures stay the
    checkpoint's, since no held-out figure can measure a model trained on every event.

    The default recommender is the one with the best validation NDCG@10 (never chosen on test). When
    the SASRec checkpoint was trained with DP-SGD the bundle is private instead: SASRec is the default
    (a choice on validation data would use user data outside the accounting), item-kNN is left out,
    and popularity (also the search index's popularity and the server's trending fallback) is a
    private count release at `counts.epsilon` and the checkpoint's delta, composed with DP-SGD's.
    """
    from soutui.data.datasets import load_dataset
    from soutui.data.sequences import leave_one_out
    from soutui.evaluation.protocol import RankingProtocol

    read_at = int(time.time())  # users forgotten before this are not in the data read now
    items, events = load_dataset(dataset, store_url=store_url)
    data = SequenceData.from_events(events, items)
    split = leave_one_out(data)
    catalogue = catalogue_in_index_order(items, data.item_ids)
    progress(f"{dataset}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions")
    evaluation: dict[str, Any] = {
        "dataset": dataset,
        "protocol": RankingProtocol().describe(),
        "split": "leave-one-out (last item test, second-last validation); models fitted on the training part",
        "served_models": "light baselines are refitted on all interactions after evaluation",
        "stats": data.stats(),
        "models": {},
    }
    private = checkpoint_privacy(sasrec) if sasrec else None
    if refit and (not sasrec or private):
        raise ConfigError("--refit retrains a SASRec checkpoint: give --sasrec CHECKPOINT" if not sasrec else
                          "--refit: a DP-SGD checkpoint cannot be retrained outside its privacy accounting; "
                          "build without --refit")  # fmt: skip
    dp = CountPrivacy(counts.epsilon, float(private["delta"]), counts.max_items) if private else None
    serving, popularity = _light_models(data, split, evaluation, dp, progress)
    onnx: dict[str, Callable[[Path], None]] = {}
    with tempfile.TemporaryDirectory(prefix="soutui-onnx-") as staged:
        if sasrec:
            evaluation["models"]["sasrec"] = _served_sasrec(
                sasrec, split, data.n_items, Path(staged), progress, refit=data if refit else None
            )
            if refit:
                evaluation["served_models"] += "; SASRec's recipe too (its figures are the checkpoint's)"
            onnx["sasrec"] = lambda path: _copy_tree(Path(staged), path)  # the files just evaluated (or refitted)
        if dp:
            default = "sasrec"
            evaluation["default_recommender"] = "sasrec (trained with DP-SGD; not chosen on validation)"
        else:
            default = max(evaluation["models"], key=lambda n: evaluation["models"][n]["valid"]["NDCG@10"])
            evaluation["default_recommender"] = f"{default} (best validation NDCG@10)"
        extra = _bundle_extra(evaluation, catalogue, data, popularity, with_search, progress)
        path = write_bundle(
            out_root, dataset, catalogue, serving, default, evaluation, extra, onnx_models=onnx
        )
    _clear_pending_forget(dataset, store_url, read_at, progress)
    return path


def _light_models(
    data: SequenceData,
    split: LeaveOneOut,
    evaluation: dict[str, Any],
    dp: CountPrivacy | None,
    progress: ProgressFn,
) -> tuple[dict[str, Recommender], np.ndarray]:
    """Fit and evaluate the light baselines on the training part, refit them on all data for serving;
    returns them and the item popularity the search index ranks with. In DP mode only popularity, as a
    private release (the evaluation's own release, on the training part, is not shipped)."""
    from soutui.evaluation.protocol import evaluate_full_ranking
    from soutui.models.registry import model_class

    serving: dict[str, Recommender] = {}
    popularity = np.bincount(np.concatenate(data.sequences), minlength=data.n_items).astype(np.float64)
    for name in ("popularity",) if dp else LIGHT_MODELS:
        t0 = time.time()
        record: dict[str, Any] = {}
        model: Recommender
        if dp:
            from soutui.training.dp_counts import private_popularity

            model = private_popularity(split.train, dp.epsilon, dp.delta, dp.max_items)[0]
            served, record = private_popularity(data, dp.epsilon, dp.delta, dp.max_items)
            serving[name], popularity = served, np.maximum(served.scores_, 0.0)
        else:
            model = model_class(name)().fit(split.train, split.valid)
            serving[name] = model_class(name)().fit(data)
        evaluation["models"][name] = {
            "valid": evaluate_full_ranking(model, split.valid, data.n_items),
            "test": evaluate_full_ranking(model, split.test, data.n_items),
            **({"privacy": record} if record else {}),
        }
        progress(f"{name}: test NDCG@10={evaluation['models'][name]['test']['NDCG@10']:.4f} ({time.time() - t0:.1f}s)"
                 + (f", private release eps={record['epsilon']}" if record else ""))  # fmt: skip
    return serving, popularity


def _clear_pending_forget(dataset: str, store_url: str | None, read_at: int, progress: ProgressFn) -> None:
    """The new bundle was built without the users forgotten before `read_at`: their rebuild is done."""
    try:
        store = open_store(store_url)
    except StoreError as exc:  # e.g. busy: the rows stay pending, which only means one more rebuild
        progress(f"could not mark forgotten users as rebuilt ({exc}); the next build will")
        return
    try:
        if dataset.replace("-", "_") in store.datasets():
            n = store.clear_pending_forget(dataset, read_at)
            if n:
                progress(f"{n} forgotten user(s) are no longer in any model of the new bundle")
    finally:
        store.close()


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


def _served_sasrec(
    checkpoint: str,
    split: LeaveOneOut,
    n_items: int,
    staged: Path,
    progress: ProgressFn,
    refit: SequenceData | None = None,
) -> dict[str, Any]:
    """Export the SASRec checkpoint to ONNX in `staged` and measure THAT scorer (the served form,
    fed the split's event times as the server feeds live ones); PyTorch's test figures stay
    beside it as the reference the export is checked against. With `refit` (all interactions),
    the checkpoint is measured so, then its recipe retrained on them replaces it in `staged`."""
    from soutui.evaluation.protocol import evaluate_full_ranking
    from soutui.models import sasrec_onnx
    from soutui.models.registry import load_model

    model = load_model(checkpoint)
    if int(model.n_items_) != n_items:
        raise ValueError(
            f"SASRec checkpoint {checkpoint} has {model.n_items_} items but the dataset has {n_items}; "
            "train it on this dataset"
        )
    sasrec_onnx.export_onnx(model, staged)  # type: ignore[arg-type]  # (+ item_vectors.npy)
    model.save(staged / CHECKPOINT_DIR)  # the trainable form, for `soutui retrain`'s warm start
    served = sasrec_onnx.OnnxScorer(staged, threads=max(1, os.cpu_count() or 1))
    out: dict[str, Any] = {
        "valid": evaluate_full_ranking(served, split.valid, n_items),
        "test": evaluate_full_ranking(served, split.test, n_items),
        "pytorch_test": evaluate_full_ranking(model, split.test, n_items),
        **({"privacy": p} if (p := checkpoint_privacy(checkpoint)) else {}),
        "note": "valid/test: the served ONNX scorer (checkpoint as trained, not refitted); "
        "pytorch_test: the same checkpoint in PyTorch, for reference",
        "served": {"refit": False},
    }
    progress(
        f"sasrec (served ONNX): test NDCG@10={out['test']['NDCG@10']:.4f} "
        f"(PyTorch {out['pytorch_test']['NDCG@10']:.4f})"
    )
    if refit is not None:
        out["served"] = _refit_sasrec(model, refit, split, staged, progress)
        out["note"] = ("valid/test: the checkpoint as trained, through its ONNX form; the served model is its "
                       "recipe retrained on all interactions (served), which no held-out figure can measure")  # fmt: skip
    return out


def _refit_sasrec(
    model: Recommender, data: SequenceData, split: LeaveOneOut, staged: Path, progress: ProgressFn
) -> dict[str, Any]:
    """Retrain `model`'s recipe on all of `data` and put its ONNX scorer (and checkpoint) in `staged`
    in place of the measured checkpoint's; its ONNX form is checked against its PyTorch form."""
    from soutui.models import sasrec_onnx
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.training.trainer import LoopTrainer

    assert isinstance(model, SASRecRecommender)
    t0 = time.perf_counter()
    progress(f"sasrec: refitting on all {data.n_interactions} interactions ...")
    new = model.use_trainer(LoopTrainer(progress=False)).refit(data)
    shutil.rmtree(staged)
    staged.mkdir()
    sasrec_onnx.export_onnx(new, staged)
    new.save(staged / CHECKPOINT_DIR)
    rows = np.arange(min(256, len(split.test)))
    hist = [split.test.histories[i] for i in rows]
    times = None if split.test.timestamps is None else [split.test.timestamps[i] for i in rows]
    served = sasrec_onnx.OnnxScorer(staged, threads=1).score(hist, times)
    diff = float(np.abs(served - new.score(hist, times)).max())
    report = new.training_report() or {}
    net = new._net()
    record = {
        "refit": True, "interactions": int(data.n_interactions), "epochs": int(report.get("epoch", 0)),
        "head_weight": float(net.cooc_alpha), "head_half_life": float(net.cfg.cooc_half_life),
        "seconds": round(time.perf_counter() - t0, 1), "onnx_vs_pytorch_max_abs_diff": diff,
    }  # fmt: skip
    progress(f"sasrec: refitted ({record['epochs']} epochs, {record['seconds']} s); ONNX max |diff| {diff:.2e}")
    return record


def data_until(data: SequenceData) -> int:
    """The newest event time (unix s) in `data`, 0 when undated: the manifest's `data_until`, after
    which `soutui retrain` starts its held-out window so the serving model never saw it."""
    return int(max((int(np.max(t)) for t in data.timestamps or [] if len(t)), default=0))


def _bundle_extra(
    evaluation: dict[str, Any],
    catalogue: pd.DataFrame,
    data: SequenceData,
    popularity: np.ndarray,
    with_search: bool,
    progress: ProgressFn,
) -> Callable[[Path], dict[str, Any]]:
    """Plots, evaluation.json and (optionally) the search index, written into the bundle being built."""

    def add_search(tmp: Path) -> dict[str, Any]:
        evaluation["plots"] = plot_metrics(evaluation, tmp / "plots")
        (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2, ensure_ascii=False))
        out: dict[str, Any] = {"data_until": data_until(data)}
        if not with_search:
            return out
        try:
            from soutui.search.engine import SearchEngine
        except ImportError as exc:
            progress(f"search: skipped ({exc})")
            return out
        t0 = time.time()
        SearchEngine.build(catalogue, tmp / "search", popularity=popularity)
        progress(f"search: index built ({time.time() - t0:.1f}s)")
        return {**out, "search": {"dir": "search"}}

    return add_search


def sasrec_onnx_writer(model: Recommender) -> Callable[[Path], None]:
    """A `write_bundle(onnx_models=...)` writer exporting a trained SASRec to ONNX (+ item vectors)."""

    def write(path: Path) -> None:
        from soutui.models import sasrec_onnx

        sasrec_onnx.export_onnx(model, path)  # type: ignore[arg-type]
        model.save(path / CHECKPOINT_DIR)

    return write
