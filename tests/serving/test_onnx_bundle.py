"""A bundle with SASRec served through ONNX Runtime scores like the PyTorch reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soutui.data.sequences import SequenceData
from soutui.models.popularity import Popularity
from soutui.models.sasrec_onnx import OnnxScorer
from soutui.serving.bundle import load_bundle
from soutui.serving.bundle_build import catalogue_in_index_order, sasrec_onnx_writer, write_bundle

SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 10, "dropout": 0.1, "emb_dropout": 0.1,
         "batch_size": 32, "lr": 0.01, "progress": False, "seed": 0, "epochs": 1}  # fmt: skip


def test_onnx_sasrec_bundle_matches_torch(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    pytest.importorskip("onnxruntime")
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.training.trainer import LoopTrainer

    items, events = shop
    data = SequenceData.from_events(events, items)
    ref = SASRecRecommender(**SMALL).use_trainer(LoopTrainer(progress=False)).fit(data)
    path = write_bundle(
        tmp_path, "shop", catalogue_in_index_order(items, data.item_ids), {"popularity": Popularity().fit(data)},
        "sasrec", onnx_models={"sasrec": sasrec_onnx_writer(ref)},
    )
    b = load_bundle(path)
    assert isinstance(b.models["sasrec"], OnnxScorer) and b.default == "sasrec"
    hists = [data.sequences[u] for u in range(5)]
    np.testing.assert_allclose(b.models["sasrec"].score(hists), ref.score(hists), rtol=1e-4, atol=1e-4)
    assert b.item_vectors is not None and b.item_vectors.shape[0] == data.n_items


def test_onnx_scores_at_the_history_length_and_old_fixed_width_graphs_still_load(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """The served graph takes histories at their own length (cheaper than padding to max_len) with the
    same scores; a graph whose sidecar predates the dynamic length is fed exactly max_len columns."""
    pytest.importorskip("onnxruntime")
    import json

    from soutui.models.sasrec_onnx import META_FILE, export_onnx
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.training.trainer import LoopTrainer

    items, events = shop
    data = SequenceData.from_events(events, items)
    ref = SASRecRecommender(**SMALL).use_trainer(LoopTrainer(progress=False)).fit(data)
    export_onnx(ref, tmp_path / "g")
    hists = [np.array([1, 2]), np.array([4]), np.arange(3, 9)]
    dynamic = OnnxScorer(tmp_path / "g")
    assert dynamic.width is None
    np.testing.assert_allclose(dynamic.score(hists), ref.score(hists), rtol=1e-4, atol=1e-4)
    meta = json.loads((tmp_path / "g" / META_FILE).read_text())
    meta.pop("dynamic_length")
    (tmp_path / "g" / META_FILE).write_text(json.dumps(meta))
    fixed = OnnxScorer(tmp_path / "g")
    assert fixed.width == SMALL["max_len"]
    np.testing.assert_allclose(fixed.score(hists), ref.score(hists), rtol=1e-4, atol=1e-4)
