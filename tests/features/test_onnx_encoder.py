"""The ONNX Runtime MiniLM fast path agrees with the PyTorch reference."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("SOUTUI_CACHE", str(Path(tempfile.gettempdir()) / "soutui-test-cache"))

TEXTS = [
    "cordless drill 18v",
    "Simpson Strong-Tie 12-Gauge Angle",
    "a much longer product description about lawn mowers, garden hoses and outdoor watering equipment",
    "x",
    "toilet seat white round",
    "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
]


def test_fp32_matches_torch_and_int8_stays_close() -> None:
    from soutui.features.embeddings import encode_minilm_torch
    from soutui.features.onnx_encoder import encode_minilm_onnx, encode_query

    ref = encode_minilm_torch(TEXTS)
    fp32 = encode_minilm_onnx(TEXTS, batch_size=4)  # batches mix lengths: padding must not leak into pooling
    int8 = encode_minilm_onnx(TEXTS, quantized=True)
    assert fp32.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-4)
    cos = (fp32 * ref).sum(1)
    assert cos.min() > 0.99, cos
    cos8 = (int8 * ref).sum(1)
    assert cos8.min() > 0.85, cos8  # dynamic int8: measured ~0.92-0.98 per text
    np.testing.assert_allclose(encode_query(TEXTS[0]), fp32[0], atol=1e-4)
    # the ranking of catalogue texts for a query is preserved by fp32
    assert np.argmax(fp32[1:] @ fp32[0]) == np.argmax(ref[1:] @ ref[0])
