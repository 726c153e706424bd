"""The ONNX Runtime scorer agrees with the PyTorch reference, and imports without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from sasrec_fixtures import N_ITEMS, SMALL, cyclic_data, sasrec

from soutui.features.content import ItemContent
from soutui.models.sasrec_onnx import OnnxScorer, export_onnx


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return cyclic_data(n_users=80)


@pytest.mark.parametrize("use_time", [False, True])
def test_onnx_matches_pytorch(split, tmp_path, use_time: bool) -> None:  # type: ignore[no-untyped-def]
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    m = sasrec(
        **SMALL, epochs=2, use_time=use_time, gated=use_time, cooc_neighbors=3 * use_time, graph_neighbors=2 * use_time
    )
    m.fit(split.train, content=ItemContent(text=text, attributes=[[i % 4] for i in range(N_ITEMS)]))
    if use_time:  # the co-occurrence head (weight normally chosen on validation) exports too, and so
        assert m.net_ is not None and m.net_.graph_proj is not None  # do graph-aware item vectors
        m.net_.cooc_alpha.fill_(1.5)
        with torch.no_grad():
            m.net_.graph_proj.weight.normal_(std=0.3)
    m.save(tmp_path)
    export_onnx(m, tmp_path, quantize=True)
    ort = OnnxScorer(tmp_path)
    hist, ts = (
        split.test.histories[:16] + [np.array([], np.int64)],
        split.test.timestamps[:16] + [np.array([])],
    )
    ref, got = m.score(hist, ts), ort.score(hist, ts)
    assert np.abs(ref - got).max() < 1e-4
    for r, g in zip(ref, got, strict=True):
        assert list(np.argsort(-r)[:10]) == list(np.argsort(-g)[:10])
    q = OnnxScorer(tmp_path, int8=True).score(hist, ts)
    assert q.shape == ref.shape and np.abs(q - ref).max() < 0.5  # int8: close, not exact
    items, _ = ort.recommend(hist[0], k=5, exclude=hist[0], timestamps=ts[0])
    assert not set(items) & set(hist[0])
    assert list(items) == list(m.recommend(hist[0], k=5, exclude=hist[0], timestamps=ts[0])[0])
    if use_time:  # served = measured: the scorer reads the timestamps as the PyTorch model does
        assert not np.allclose(got, ort.score(hist))


def test_out_of_range_history_is_rejected(split, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = sasrec(**SMALL, epochs=1).fit(split.train)
    m.save(tmp_path)
    export_onnx(m, tmp_path)
    with pytest.raises(ValueError, match="outside"):
        OnnxScorer(tmp_path).score([np.array([N_ITEMS + 3])])


def test_scorer_module_does_not_import_torch() -> None:
    code = "import sys, soutui.models.sasrec_onnx; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
