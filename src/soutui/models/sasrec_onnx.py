"""ONNX export of the SASRec scorer and the ONNX Runtime scorer the server uses.

This module does NOT import torch at import time: `OnnxScorer` needs only numpy and
onnxruntime, so a serving process can score without torch installed. `export_onnx`
imports torch lazily. The exported graph maps left-padded item rows (B, max_len)
[+ timestamps in days (B, max_len) for time-aware models] to scores over all items
(B, n_items); the PyTorch model is the reference it is tested against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soutui.models.sasrec_features import pad_left, pad_times

if TYPE_CHECKING:
    from soutui.models.sasrec_recommender import SASRecRecommender

ONNX_FILE = "sasrec.onnx"
INT8_FILE = "sasrec.int8.onnx"
META_FILE = "sasrec.onnx.json"


def export_onnx(
    model: SASRecRecommender, out_dir: str | Path, quantize: bool = False, opset: int = 17
) -> Path:
    """Write sasrec.onnx (+ sasrec.int8.onnx when `quantize`) and its sidecar json into `out_dir`."""
    import torch

    net = model._net()
    net = net.to("cpu").eval()
    cfg = net.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    use_time = bool(cfg.use_time and model.content_cfg.use_timestamps)

    class Scorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, seq: torch.Tensor, ts: torch.Tensor | None = None) -> torch.Tensor:
            return self.net(seq, None, ts)[0]

    seq = torch.from_numpy(pad_left([np.arange(min(3, cfg.n_items))], cfg.max_len, width=cfg.max_len))
    args: tuple[Any, ...] = (seq,)
    names = ["seq"]
    if use_time:
        args = (seq, torch.full(seq.shape, -1.0))
        names.append("ts")
    axes = {n: {0: "batch"} for n in names} | {"scores": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            Scorer(), args, str(out / ONNX_FILE), input_names=names, output_names=["scores"],
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    meta = {"max_len": cfg.max_len, "n_items": cfg.n_items, "inputs": names, "opset": opset}
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    if quantize:
        quantize_int8(out / ONNX_FILE, out / INT8_FILE)
    return out / ONNX_FILE


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul / Gemm weights (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


class OnnxScorer:
    """Scores histories with ONNX Runtime only (no torch), same contract as SASRecRecommender.score."""

    def __init__(self, model_dir: str | Path, int8: bool = False, threads: int = 1):
        import onnxruntime as ort

        d = Path(model_dir)
        path = d / (INT8_FILE if int8 else ONNX_FILE)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; export it with soutui.models.sasrec_onnx.export_onnx")
        meta = json.loads((d / META_FILE).read_text())
        self.max_len: int = int(meta["max_len"])
        self.n_items_: int = int(meta["n_items"])
        self.uses_time: bool = "ts" in meta["inputs"]
        items = d / "items.json"
        self.item_ids: list[str] | None = json.loads(items.read_text()) if items.exists() else None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.score_timed(histories, None)

    def score_timed(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None
    ) -> np.ndarray:
        """(B, n_items) float32 scores; `timestamps` are unix seconds aligned with each history."""
        for h in histories:
            if len(h) and (np.min(h) < 0 or np.max(h) >= self.n_items_):
                raise ValueError(f"history holds item indices outside 0..{self.n_items_ - 1}")
        feeds = {"seq": pad_left(histories, self.max_len, width=self.max_len)}
        if self.uses_time:
            ts = timestamps if timestamps is not None else [None] * len(histories)
            feeds["ts"] = pad_times(list(ts), self.max_len)
        (scores,) = self.session.run(["scores"], feeds)
        return np.asarray(scores)

    def recommend(
        self, history: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item indices, scores), `exclude` items never returned (as Recommender.recommend)."""
        from soutui.models.base import top_k

        s = self.score([np.asarray(history, dtype=np.int64)])[0].astype(np.float64)
        if exclude is not None and len(exclude):
            s[np.asarray(exclude, dtype=np.int64)] = -np.inf
        return top_k(s, k)
