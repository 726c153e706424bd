"""Explicit name -> class registry for recommenders (no discovery by file name)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from soutui.config import ConfigError, MissingFileError
from soutui.models.base import Recommender

# name -> "module:Class"; imported lazily so light models don't pull in torch.
MODELS: dict[str, str] = {
    "popularity": "soutui.models.popularity:Popularity",
    "recent-popularity": "soutui.models.popularity:RecentPopularity",
    "itemknn": "soutui.models.itemknn:ItemKNN",
    "sknn": "soutui.models.sknn:SessionKNN",
    "mlp": "soutui.models.mlp:MLPRecommender",
    "sasrec": "soutui.models.sasrec_recommender:SASRecRecommender",
}


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def load_model(path: str | Path) -> Recommender:
    """Load any saved model directory by reading its model.json."""
    path = Path(path)
    meta_file = path / "model.json"
    if not meta_file.exists():
        raise MissingFileError(f"{path} is not a saved soutui model (no model.json)")
    name = json.loads(meta_file.read_text())["model"]
    return model_class(name).load(path)
