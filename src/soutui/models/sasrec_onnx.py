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
from soutui.models.sasrec_session import SessionHead

ONNX_FILE = "sasrec.onnx"
INT8_FILE = "sasrec.int8.onnx"
META_FILE = "sasrec.onnx.json"
VECTORS_FILE = "item_vectors.npy"
RETRIEVAL_FILE = "sasrec.retrieval.onnx"  # (seq[, ts]) -> query vector + the sparse terms' items, exact
INDEX_FILE = "item_index.npy"  # (I, D+1) [item vector, bias]: query . row = the dense part of the score


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
            Scorer().eval(), args, str(out / ONNX_FILE), input_names=names, output_names=["scores"],
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
    session: SessionHead | None = getattr(model, "session_", None)
    if session is not None:  # numpy-only: the served scorer adds it exactly as the PyTorch model does
        session.save(out)
    if quantize:
        quantize_int8(out / ONNX_FILE, out / INT8_FILE)
    export_retrieval(net, out, names, args, opset)
    return out / ONNX_FILE


def export_retrieval(net: Any, out: Path, names: list[str], args: tuple[Any, ...], opset: int = 17) -> Path:
    """The two-tower form of the same scores, for catalogues too large to score in full.

    SASRec's score is a dense part, (h . v_i + b_i) / tau, which an inner-product index can
    retrieve (query = [h, 1] / tau against rows [v_i, b_i] of item_index.npy), plus sparse
    terms that only lift items in the history (seen bias) or among the history items'
    co-occurrence neighbours. The graph returns the query, those "near" items (catalogue
    indices, -1 = none) and their exact full scores; an item outside them scores exactly its
    dense part. Tested against SASRec.score_last (tests/serving/test_ann.py)."""
    import torch

    class Retrieval(torch.nn.Module):
        table: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.net = net.eval()  # the exporter leaves modules in the mode it found them: the table needs eval
            with torch.no_grad():  # a constant: a request gathers its rows instead of re-encoding the catalogue
                self.register_buffer("table", net.item_table().detach().clone())

        def forward(self, seq: torch.Tensor, ts: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            n, table = self.net, self.table  # (I+1, D)
            h = n.encode(seq, ts, table)[:, -1] * n.scale  # (B, D)
            tau = n.cfg.temperature
            query = torch.cat([h, torch.ones_like(h[:, :1])], 1) / tau  # (B, D+1)
            near = seq if n.cooc_idx is None else torch.cat([seq, n.cooc_idx[seq].reshape(seq.shape[0], -1)], 1)
            s = (h.unsqueeze(1) * table[near]).sum(-1)  # (B, M) dense part at the near items
            if n.bias is not None:
                s = s + n.bias[near]
            if n.seen_w is not None:  # times each near item occurs in the history
                s = s + n.seen_w * (near.unsqueeze(2) == seq.unsqueeze(1)).sum(2).to(s.dtype)
            s = s / tau
            if n.cooc_idx is not None:
                full = n.cooc_scores(seq)  # (B, I)
                s = s + n.cooc_alpha * full.gather(1, (near - 1).clamp(min=0))
            return query, near - 1, s

    with torch.no_grad():
        axes = {k: {0: "batch", 1: "length"} for k in names} | {
            "query": {0: "batch"}, "near": {0: "batch", 1: "near"}, "near_scores": {0: "batch", 1: "near"}
        }  # fmt: skip
        graph = Retrieval().eval()
        torch.onnx.export(
            graph, args, str(out / RETRIEVAL_FILE), input_names=names,
            output_names=["query", "near", "near_scores"], dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
        table = graph.table[1:].float()
        bias = net.bias[1:].float() if net.bias is not None else torch.zeros(len(table))
        np.save(out / INDEX_FILE, torch.cat([table, bias.unsqueeze(1)], 1).numpy().astype(np.float32))
    return out / RETRIEVAL_FILE


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
        self.session_head = SessionHead.load(d)

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
        out = np.asarray(scores)
        return out if self.session_head is None else self.session_head.add(out, histories)

    def item_vectors(self) -> np.ndarray | None:
        return self.vectors_

    def candidate_scorer(self) -> OnnxRetrieval | None:
        """The two-tower form of this scorer (None for an export that predates it)."""
        d = self.model_dir
        if not (d / RETRIEVAL_FILE).exists() or not (d / INDEX_FILE).exists():
            return None
        if self.session_head is not None and self.session_head.weight:
            return None  # its votes are not in the two-tower form: such a model is scored in full
        return OnnxRetrieval(d, self.max_len, self.uses_time, self.width, self.threads)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls(path)

    def refit(
        self, data: SequenceData, *, content: ItemContent | None = None, previous: Recommender | None = None
    ) -> Self:
        raise NotImplementedError(
            "sasrec-onnx is the served, load-only form of SASRec: refit its PyTorch checkpoint "
            "(soutui bundle build --sasrec CKPT --refit) and export that"
        )

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError(
            "sasrec-onnx is load-only: save the PyTorch SASRecRecommender and export it with export_onnx"
        )

    def _save_state(self, path: Path) -> None:
        raise NotImplementedError("sasrec-onnx is load-only; write it with sasrec_onnx.export_onnx")

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError("sasrec-onnx loads in its constructor: OnnxScorer(model_dir)")


class OnnxRetrieval:
    """SASRec's scores split for an inner-product index (see export_retrieval); implements
    models.base.CandidateScorer with ONNX Runtime only."""

    def __init__(self, model_dir: Path, max_len: int, uses_time: bool, width: int | None, threads: int = 1):
        import onnxruntime as ort

        self.max_len, self.uses_time, self.width = max_len, uses_time, width
        self.index_path = model_dir / INDEX_FILE
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / RETRIEVAL_FILE), opts, providers=["CPUExecutionProvider"]
        )

    def index_vectors(self) -> np.ndarray:
        return np.load(self.index_path, mmap_mode="r")

    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query (B, E), near items (B, M) catalogue indices or -1, their exact scores (B, M))."""
        feeds = {"seq": pad_left(histories, self.max_len, width=self.width)}
        if self.uses_time:
            ts = timestamps if timestamps is not None else [None] * len(histories)
            feeds["ts"] = pad_times(list(ts), feeds["seq"].shape[1])
        query, near, near_scores = self.session.run(["query", "near", "near_scores"], feeds)
        return np.asarray(query, np.float32), np.asarray(near), np.asarray(near_scores)
