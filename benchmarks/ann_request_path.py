"""The ANN request path at a million items: rules over the catalogue vs over the candidates.

Protocol: a SASRec (d = 64, 2 blocks, L = 50, no co-occurrence head; random initial weights:
the cost measured here does not depend on training) over `--items` items is exported to ONNX
as a bundle would hold it, and an IVF-Flat index is built over its item rows (serving/ann.py,
default AnnConfig: 1,000 candidates, nprobe 256). A catalogue of `--items` items in 1,000
categories, 5 % out of stock. For `--requests` histories (Zipf item draws, 2-50 long), k = 10,
in-stock only, the history excluded (as purchases are), one thread, each request timed three
ways in turn (so machine load falls on all three alike), after 10 warm-up requests:

- retrieval: the query encoding, the index search and the exact candidate scores alone
  (`AnnRetriever.candidate_scores`);
- dense: what a request did before serving/candidates.py: the catalogue-long -inf score vector
  (`AnnRetriever.scores`), the allowed mask, the fallback count and `rules.select` over it;
- sparse: `candidates.select_candidates`, the rules over the candidate pool alone (its
  retrieval included, as in dense).

Each is reported as wall time and as the thread's CPU time (`time.thread_time`): on a shared,
loaded machine the wall time is mostly waiting for a CPU, the CPU time is the work.

The picks of dense and sparse are compared on every request (they must be equal).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ann_request_path.py --items 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def build(n_items: int, out: Path, nlist: int = 0, train_sample: int = 100_000) -> tuple[Any, Any, float]:
    """(retriever, catalogue, index build seconds) for an exported random SASRec."""
    import torch

    from soutui.models.sasrec import SASRec, SASRecConfig
    from soutui.models.sasrec_onnx import OnnxScorer, export_onnx
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.serving.ann import AnnConfig, AnnRetriever
    from soutui.serving.bundle import Catalogue

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = SASRecConfig(n_items=n_items, max_len=50, d_model=64, n_layers=2, n_heads=2, dropout=0.0,
                       emb_dropout=0.0, id_dropout=0.0, use_time=False, cooc_neighbors=0)  # fmt: skip
    model = SASRecRecommender(max_len=50, d_model=64, n_layers=2, use_time=False, cooc_neighbors=0)
    model.net_ = SASRec(cfg).eval()
    export_onnx(model, out)
    del model
    scorer = OnnxScorer(out).candidate_scorer()
    assert scorer is not None
    retriever = AnnRetriever(scorer, AnnConfig(min_items=1, nlist=nlist, train_sample=train_sample))
    rng = np.random.default_rng(0)
    cats = [f"Dept{c % 20} > Shelf{c}" for c in rng.integers(1000, size=n_items)]
    ids = np.array([f"i{j}" for j in range(n_items)], dtype=object)
    catalogue = Catalogue(ids, [f"item {j}" for j in range(n_items)], cats, [""] * n_items,
                          np.full(n_items, np.nan), rng.random(n_items) > 0.05)  # fmt: skip
    return retriever, catalogue, retriever.build_s


def measure(retriever: Any, catalogue: Any, requests: int, k: int = 10) -> dict[str, Any]:
    from soutui.serving import rules
    from soutui.serving.candidates import select_candidates
    from soutui.serving.settings import RulesConfig

    cfg = RulesConfig()
    rng = np.random.default_rng(1)
    n = len(catalogue)
    histories = [(rng.zipf(1.2, size=int(rng.integers(2, 51))) % n).astype(np.int64) for _ in range(requests + 10)]
    wall: dict[str, list[float]] = {"retrieval": [], "dense": [], "sparse": []}
    cpu: dict[str, list[float]] = {"retrieval": [], "dense": [], "sparse": []}
    mismatches = fallbacks = 0
    for r, h in enumerate(histories):
        c0, t0 = time.thread_time(), time.perf_counter()
        retriever.candidate_scores(h)
        c1, t1 = time.thread_time(), time.perf_counter()
        s = retriever.scores(h)
        allowed = rules.allowed_mask(catalogue, cfg, None, h)
        dense = None
        if np.count_nonzero(allowed & np.isfinite(s)) >= k:
            dense = rules.select(s, allowed, k, cfg, catalogue)
        c2, t2 = time.thread_time(), time.perf_counter()
        sparse = select_candidates(retriever, h, None, k, cfg, catalogue, exclude=h)
        c3, t3 = time.thread_time(), time.perf_counter()
        mismatches += dense != sparse
        fallbacks += sparse is None
        if r >= 10:
            for d, a, b, c in ((wall, t0, t1, t2), (cpu, c0, c1, c2)):
                d["retrieval"].append((b - a) * 1000)
                d["dense"].append((c - b) * 1000)
            wall["sparse"].append((t3 - t2) * 1000)
            cpu["sparse"].append((c3 - c2) * 1000)
    out: dict[str, Any] = {"requests": requests, "mismatches": mismatches, "fallbacks": fallbacks}
    for kind, d in (("wall", wall), ("cpu", cpu)):
        for name, v in d.items():
            arr = np.array(v)
            out[f"{name}_{kind}"] = {"p50_ms": round(float(np.percentile(arr, 50)), 2),
                                     "p99_ms": round(float(np.percentile(arr, 99)), 2), "mean_ms": round(float(arr.mean()), 2)}  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--nlist", type=int, default=0, help="IVF cells (0: the serving default, 4 sqrt(items))")
    ap.add_argument("--train-sample", type=int, default=100_000, help="rows the IVF quantiser is trained on")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soutui-ann-path-") as tmp:
        t0 = time.perf_counter()
        print(f"exporting a {args.items:,}-item SASRec and building the index ...", file=sys.stderr)
        retriever, catalogue, build_s = build(args.items, Path(tmp), args.nlist, args.train_sample)
        setup_s = time.perf_counter() - t0
        print(f"measuring {args.requests} requests ...", file=sys.stderr)
        res = {"items": args.items, "nlist": args.nlist, "train_sample": args.train_sample, "setup_s": round(setup_s, 1), "index_build_s": round(build_s, 1),
               "load_avg": Path("/proc/loadavg").read_text().split()[:3], **measure(retriever, catalogue, args.requests)}  # fmt: skip
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for name in ("retrieval", "dense", "sparse"):
            for kind in ("cpu", "wall"):
                m = res[f"{name}_{kind}"]
                print(f"{name:>9} {kind:>4}: p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, mean {m['mean_ms']} ms")
        print(f"mismatches {res['mismatches']}, fallbacks {res['fallbacks']}, load {res['load_avg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
