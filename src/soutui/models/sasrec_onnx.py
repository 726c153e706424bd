"""ONNX export of the SASRec scorer and the ONNX Runtime scorer the server uses.

This module does NOT import torch at import time: `OnnxScorer` needs only numpy and
onnxruntime, so a serving process can score without torch installed. `export_onnx`
imports torch lazily. The exported graph maps left-padded item rows (B, max_len)
[+ timestamps in days (B, max_len) for time-aware models] to scores over all items
(B, n_items); the PyTorch model is the reference it is tested against.

`OnnxScorer` is a full `Recommender` (name "sasrec-onnx"): the served form of a trained
SASRec, load-only, so the shared contract tests run on it exactly as on the PyTorch model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.features.content import ItemContent
from soutui.models.base import Recommender
from soutui.models.sasrec_features import pad_left, pad_times

ONNX_FILE = "sasrec.onnx"
INT8_FILE = "sasrec.int8.onnx"
META_FILE = "sasrec.onnx.json"
VECTORS_FILE = "item_vectors.npy"


class Exportable(Protocol):
    """What export_onnx reads from a fitted SASRecRecommender (typed structurally, so this
    torch-free module never imports the torch model)."""

    content_cfg: Any

    def _net(self) -> Any: ...

    def item_vectors(self) -> np.ndarray | None: ...


def export_onnx(model: Exportable, out_dir: str | Path, quantize: bool = False, opset: int = 17) -> Path:
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
    # batch and history length both dynamic: a short history is scored at its own length, not padded to max_len
    axes = {n: {0: "batch", 1: "length"} for n in names} | {"scores": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            Scorer(), args, str(out / ONNX_FILE), input_names=names, output_names=["scores"],
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    meta = {
        "max_len": cfg.max_len,
        "n_items": cfg.n_items,
        "inputs": names,
        "opset": opset,
        "dynamic_length": True,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    np.save(out / VECTORS_FILE, np.asarray(model.item_vectors(), dtype=np.float32))
    if quantize:
        quantize_int8(out / ONNX_FILE, out / INT8_FILE)
    return out / ONNX_FILE


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul / Gemm weights (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


class OnnxScorer(Recommender):
    """A SASRec exported by `export_onnx`, scored with ONNX Runtime only (no torch).

    Load-only: `fit` and `save` raise, since the served form is trained in PyTorch and
    exported. Item vectors written beside the graph give similar items in the model's
    own embedding space.
    """

    name = "sasrec-onnx"

    def __init__(self, model_dir: str | Path, int8: bool = False, threads: int = 1):
        import onnxruntime as ort

        d = Path(model_dir)
        path = d / (INT8_FILE if int8 else ONNX_FILE)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; export it with soutui.models.sasrec_onnx.export_onnx")
        meta = json.loads((d / META_FILE).read_text())
        self.model_dir, self.int8, self.threads = d, int8, threads
        self.max_len: int = int(meta["max_len"])
        self.n_items_ = int(meta["n_items"])
        self.uses_time: bool = "ts" in meta["inputs"]
        # graphs exported before the length axis was dynamic take exactly max_len columns
        self.width: int | None = None if meta.get("dynamic_length") else self.max_len
        items = d / "items.json"
        self.item_ids: list[str] | None = json.loads(items.read_text()) if items.exists() else None
        vectors = d / VECTORS_FILE
        self.vectors_: np.ndarray | None = np.load(vectors) if vectors.exists() else None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def params(self) -> dict[str, Any]:
        return {"int8": self.int8, "threads": self.threads}

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        raise NotImplementedError(
            "sasrec-onnx is the served, load-only form of SASRec: train SASRecRecommender "
            "(soutui train) and export it with soutui.models.sasrec_onnx.export_onnx"
        )

    def score(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """(B, n_items) float32 scores; `timestamps` are unix seconds aligned with each history."""
        for h in histories:
            if len(h) and (np.min(h) < 0 or np.max(h) >= self.n_items_):
                raise ValueError(f"history holds item indices outside 0..{self.n_items_ - 1}")
        feeds = {"seq": pad_left(histories, self.max_len, width=self.width)}  # (B, T), T <= max_len
        if self.uses_time:
            ts = timestamps if timestamps is not None else [None] * len(histories)
            feeds["ts"] = pad_times(list(ts), feeds["seq"].shape[1])
        (scores,) = self.session.run(["scores"], feeds)
        return np.asarray(scores)

    def item_vectors(self) -> np.ndarray | None:
        return self.vectors_

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls(path)

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError(
            "sasrec-onnx is load-only: save the PyTorch SASRecRecommender and export it with export_onnx"
        )

    def _save_state(self, path: Path) -> None:
        raise NotImplementedError("sasrec-onnx is load-only; write it with sasrec_onnx.export_onnx")

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError("sasrec-onnx loads in its constructor: OnnxScorer(model_dir)")
