"""`soutui bundle build --sasrec CKPT --refit`: the checkpoint is measured, its recipe refitted on all
interactions is what the bundle serves (ONNX, checked against its PyTorch form)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from serving_shop import make_home

from soutui.config import ConfigError
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.models.registry import load_model
from soutui.serving.bundle import load_bundle
from soutui.serving.bundle_build import CHECKPOINT_DIR, build_from_dataset

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from sasrec_fixtures import SMALL, sasrec  # noqa: E402


def test_refit_bundle_serves_the_recipe_retrained_on_every_interaction(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    torch.set_num_threads(1)
    url = make_home(tmp_path, shop)
    data = SequenceData.from_events(shop[1], shop[0])
    split = leave_one_out(data)
    ckpt = sasrec(**SMALL, epochs=3, patience=20).fit(split.train, split.valid)
    ckpt.save(tmp_path / "ckpt")
    path = build_from_dataset("shop", tmp_path / "bundles", store_url=url, sasrec=str(tmp_path / "ckpt"),
                              with_search=False, progress=lambda _: None, refit=True)  # fmt: skip
    entry = json.loads((path / "evaluation.json").read_text())["models"]["sasrec"]
    served = entry["served"]
    assert served["refit"] is True and served["interactions"] == data.n_interactions
    assert served["epochs"] == ckpt.training_report()["best_epoch"] > 0  # type: ignore[index]
    assert served["head_weight"] == float(ckpt._net().cooc_alpha)
    assert served["onnx_vs_pytorch_max_abs_diff"] < 1e-3
    # the figures are the checkpoint's, measured through its ONNX form as without --refit
    hists = [split.test.histories[i] for i in range(20)]
    assert entry["pytorch_test"]["users"] == len(split.test) and "checkpoint as trained" in entry["note"]
    refitted = load_model(path / "models" / "sasrec" / CHECKPOINT_DIR)
    assert refitted.training_report() is None and refitted.saved_report_["epoch"] == served["epochs"]  # type: ignore[attr-defined]
    bundle_scores = load_bundle(path).models["sasrec"].score(hists)
    np.testing.assert_allclose(bundle_scores, refitted.score(hists), atol=1e-3)  # serves the refit ...
    assert np.abs(bundle_scores - ckpt.score(hists)).max() > 1e-2  # ... not the measured checkpoint


def test_refit_needs_a_sasrec_checkpoint(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    url = make_home(tmp_path, shop)
    with pytest.raises(ConfigError, match="--sasrec"):
        build_from_dataset("shop", tmp_path / "b", store_url=url, with_search=False, progress=lambda _: None,
                           refit=True)  # fmt: skip
