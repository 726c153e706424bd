"""Serving bundles: the versioned, checksummed directory a server loads (format + verify + load).

A bundle is everything one server version needs: the item catalogue in model-index
order, saved recommenders (and ONNX files), the search index and the last
evaluation. It is verified whole before it replaces the bundle being served, so a
corrupt or incompatible one is refused and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.config import UserError
from soutui.data.checksums import sha256_file
from soutui.models.base import Recommender
from soutui.models.sasrec_onnx import OnnxScorer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(UserError, ValueError):
    """A bundle cannot be served; the message says what is wrong and how to fix it."""


def checksum_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, keyed by relative posix path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise BundleError(f"{root} is not a bundle: no {MANIFEST} (build one with `soutui bundle build`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return manifest


def verify_bundle(root: str | Path) -> dict[str, Any]:
    """Check manifest fields, format version and every checksum; return the manifest."""
    root = Path(root)
    m = read_manifest(root)
    missing = [k for k in ("format_version", "dataset", "version", "n_items", "models", "files") if k not in m]
    if missing:
        raise BundleError(f"{root}/{MANIFEST} lacks {missing}; rebuild the bundle")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{root}: bundle format {m['format_version']!r} but this server reads format {FORMAT_VERSION}; "
            "rebuild it with this soutui version"
        )
    files: dict[str, str] = m["files"]
    for rel, digest in files.items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"{root}: file {rel} listed in the manifest is missing")
        if sha256_file(p) != digest:
            raise BundleError(f"{root}: checksum mismatch for {rel} (file changed or corrupt); rebuild the bundle")
    if "items.parquet" not in files:
        raise BundleError(f"{root}: items.parquet is not covered by the manifest checksums")
    for name, entry in m["models"].items():
        if not isinstance(entry, dict) or "dir" not in entry:
            raise BundleError(f"{root}: manifest models.{name} needs a 'dir'")
    default = m.get("default_recommender")
    if default not in m["models"]:
        raise BundleError(f"{root}: default_recommender {default!r} is not one of the models {sorted(m['models'])}")
    return m


def find_bundles(bundles_dir: Path) -> list[Path]:
    """Bundle dirs under `bundles_dir`, oldest first by manifest `created`."""
    if not bundles_dir.is_dir():
        return []
    found = []
    for d in bundles_dir.iterdir():
        if (d / MANIFEST).is_file() and not d.name.startswith("."):
            try:
                created = str(read_manifest(d).get("created", ""))
            except BundleError:
                continue
            found.append((created, d.name, d))
    return [d for _, _, d in sorted(found)]


def newest_bundle(bundles_dir: Path) -> Path:
    found = find_bundles(bundles_dir)
    if not found:
        raise BundleError(
            f"no bundle under {bundles_dir}; build one with `soutui bundle build --dataset NAME` "
            "or pass --bundle PATH"
        )
    return found[-1]


# --- loading ---------------------------------------------------------------------

def _load_recommender(path: Path, entry: dict[str, Any]) -> Recommender:
    from soutui.models.registry import load_model

    return load_model(path)


def _load_onnx_sasrec(path: Path, entry: dict[str, Any]) -> Recommender:
    """SASRec in its served form: ONNX Runtime on one thread (onnxruntime is imported only here)."""
    return OnnxScorer(path, threads=1)


# manifest models.<name>.runtime -> loader; the server never needs torch.
RUNTIMES: dict[str, Callable[[Path, dict[str, Any]], Recommender]] = {
    "recommender": _load_recommender,
    "onnx": _load_onnx_sasrec,
}


@dataclass
class Catalogue:
    """Item columns as plain arrays in model-index order, so requests never touch pandas."""

    item_ids: np.ndarray  # (I,) object
    titles: list[str]
    categories: list[str]
    brands: list[str]
    prices: np.ndarray  # (I,) float64, nan = unknown
    in_stock: np.ndarray  # (I,) bool
    index: dict[str, int] = field(default_factory=dict)
    _category_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_frame(cls, items: pd.DataFrame) -> Catalogue:
        ids = items["item_id"].astype(str).to_numpy(dtype=object)
        col = lambda c: items[c].astype("string").fillna("").tolist() if c in items else [""] * len(items)  # noqa: E731
        titles = col("title")  # '' when unknown: an item is never shown under its bare id
        prices = items["price"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan) if "price" in items else np.full(len(items), np.nan)
        stock = items["in_stock"].astype("boolean").fillna(True).to_numpy(dtype=bool) if "in_stock" in items else np.ones(len(items), bool)
        return cls(ids, titles, col("category"), col("brand"), prices, stock, {str(x): i for i, x in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.item_ids)

    def category_mask(self, category: str) -> np.ndarray:
        """Items whose category path has `category` as a level or prefix (case-insensitive)."""
        key = category.strip().lower()
        mask = self._category_masks.get(key)
        if mask is None:
            mask = np.array(
                [key == c.lower() or c.lower().startswith(key + " >") or f"> {key}" in c.lower() for c in self.categories],
                dtype=bool,
            )
            if len(self._category_masks) < 1024:
                self._category_masks[key] = mask
        return mask

    def label(self, i: int) -> str:
        """How reasons name an item: its title, else brand and leaf category, else 'an item'."""
        if self.titles[i]:
            return self.titles[i]
        leaf = self.categories[i].split(">")[-1].strip()
        return " ".join(p for p in (self.brands[i], leaf) if p) or "an item"

    def item_json(self, i: int) -> dict[str, Any]:
        price = self.prices[i]
        return {
            "item_id": str(self.item_ids[i]),
            "title": self.titles[i],
            "category": self.categories[i] or None,
            "brand": self.brands[i] or None,
            "price": None if np.isnan(price) else round(float(price), 2),
            "in_stock": bool(self.in_stock[i]),
        }


@dataclass
class LoadedBundle:
    """A verified bundle in memory: catalogue, recommenders, optional search engine."""

    path: Path
    manifest: dict[str, Any]
    catalogue: Catalogue
    models: dict[str, Recommender]
    default: str
    search: Any | None  # soutui.search.engine.SearchEngine when the bundle has one
    evaluation: dict[str, Any]
    item_vectors: np.ndarray | None  # L2-normalised (I, D), for diversity and explanations
    trending: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (I,) live trending scores
    pinned: list[int] = field(default_factory=list)
    boosted: list[int] = field(default_factory=list)
    any_out_of_stock: bool = True  # False: the in-stock rule can drop nothing, so search asks for k, not 2k
    retrievers: dict[str, Any] = field(default_factory=dict)  # model -> serving.ann.AnnRetriever (large catalogues)

    @property
    def version(self) -> str:
        return f"{self.manifest['dataset']}-{self.manifest['version']}"

    @property
    def dataset(self) -> str:
        return str(self.manifest["dataset"])


def load_bundle(root: str | Path, recommender: str = "") -> LoadedBundle:
    """Verify then load a bundle; any failure is a BundleError naming what to fix."""
    root = Path(root).resolve()
    m = verify_bundle(root)
    try:
        items = pd.read_parquet(root / "items.parquet")
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise BundleError(f"{root}/items.parquet cannot be read: {exc}") from exc
    if len(items) != int(m["n_items"]):
        raise BundleError(f"{root}: items.parquet has {len(items)} rows but the manifest says n_items={m['n_items']}")
    catalogue = Catalogue.from_frame(items)
    models: dict[str, Recommender] = {}
    for name, entry in m["models"].items():
        runtime = entry.get("runtime", "recommender")
        if runtime not in RUNTIMES:
            raise BundleError(f"{root}: model {name} has unknown runtime {runtime!r}; known: {sorted(RUNTIMES)}")
        try:
            model = RUNTIMES[runtime](root / entry["dir"], entry)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"{root}: model {name} cannot be loaded ({type(exc).__name__}: {exc})") from exc
        if int(model.n_items_) != len(catalogue):
            raise BundleError(
                f"{root}: model {name} scores {model.n_items_} items but the catalogue has {len(catalogue)}; "
                "the model was trained on another item vocabulary — rebuild the bundle"
            )
        models[name] = model
    default = recommender or m["default_recommender"]
    if default not in models:
        raise BundleError(f"recommender {default!r} is not in bundle {root}; it has {sorted(models)}")
    search = None
    if m.get("search"):
        try:
            from soutui.search.engine import SearchEngine

            search = SearchEngine.load(root / m["search"]["dir"])
        except Exception as exc:
            raise BundleError(f"{root}: search index cannot be loaded ({type(exc).__name__}: {exc})") from exc
    evaluation: dict[str, Any] = {}
    if (root / "evaluation.json").is_file():
        evaluation = json.loads((root / "evaluation.json").read_text())
    return LoadedBundle(root, m, catalogue, models, default, search, evaluation, _vectors(models, default))


def _vectors(models: dict[str, Recommender], default: str) -> np.ndarray | None:
    """The default model's item vectors, normalised (None if it has none)."""
    vecs = models[default].item_vectors()
    if vecs is None:
        return None
    v = np.asarray(vecs, dtype=np.float32)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)
