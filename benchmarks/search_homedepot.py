"""Home Depot product search: soutui (bm25, dense, hybrid, ltr) vs the bm25s package, same protocol.

Protocol (printed with the figures): queries split 80/20 BY QUERY (split_queries, seed 0);
each test query retrieves its top 10 from the whole catalogue (54,667 products);
gain = relevance - 1 for judged products, 0 for unjudged; graded NDCG@10 with
2^gain - 1, ideal from the judged products. The learned ranker trains on the
training queries only (early stopping on 10% of them). bm25s: BM25 (Lucene variant),
titles only, English stopwords + Snowball stemming, default k1/b.

    .venv/bin/python benchmarks/search_homedepot.py [--encoders minilm,use] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import soutui.search.evaluation as evaluation
from soutui.config import home_dir
from soutui.search.engine import SearchConfig, SearchEngine

GOAL = 1.15  # ltr NDCG@10 >= 1.15 x bm25s


def load() -> tuple[object, object]:
    from soutui.data.datasets import load_dataset

    return load_dataset("homedepot-search")


def run_bm25s(items: object, test: evaluation.Qrels) -> dict[str, list[str]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = items["item_id"].astype(str).tolist()  # type: ignore[index]
    titles = items["title"].fillna("").astype(str).tolist()  # type: ignore[index]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(titles, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    queries = list(test)
    qtok = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    docs, _ = retriever.retrieve(qtok, k=10, show_progress=False, n_threads=1)
    return {q: [ids[d] for d in row] for q, row in zip(queries, docs, strict=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default="minilm,use", help="comma-separated semantic encoders to index")
    ap.add_argument("--out", default=None, help="index dir (default $SOUTUI_HOME/indexes/homedepot-bench)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the index even if one exists")
    ap.add_argument("--methods", default="bm25,dense,hybrid,ltr")
    ap.add_argument("--quantized", action="store_true", help="embed queries with the int8 ONNX MiniLM")
    ap.add_argument(
        "--reuse-ltr", action="store_true", help="evaluate the ranker already in the index (no retraining)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    items, events = load()
    qrels = evaluation.qrels_from_events(events)  # type: ignore[arg-type]
    train, test = evaluation.split(qrels, test_frac=0.2, seed=0)
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    log(f"{len(items)} products, {len(qrels)} queries: {len(train)} train / {len(test)} test")  # type: ignore[arg-type]

    results: list[dict[str, object]] = []
    t0 = time.time()
    ref = evaluation.score_rankings(run_bm25s(items, test), test)
    results.append(
        {
            "system": "bm25s (titles, stopwords+stemming)",
            "method": "bm25s",
            **ref,
            "seconds": round(time.time() - t0, 1),
        }
    )

    out = Path(args.out) if args.out else home_dir() / "indexes" / "homedepot-bench"
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if (
        args.rebuild
        or not (out / "manifest.json").exists()
        or SearchEngine.load(out).manifest["encoders"] != sorted(encoders)
    ):
        t = time.time()
        engine = SearchEngine.build(items, out, SearchConfig(encoders=encoders))  # type: ignore[arg-type]
        log(f"index built in {time.time() - t:.0f}s")
    engine = SearchEngine.load(out, quantized_query_encoder=args.quantized)
    methods = [m.strip() for m in args.methods.split(",")]
    ltr_info: dict[str, object] = {"reused": str(out / "ltr.txt")} if args.reuse_ltr and engine.ranker else {}
    if "ltr" in methods and not ltr_info:
        ltr_info = evaluation.train_ltr(engine, train, valid_frac=0.1, seed=0, log=log)
    for m in methods:
        res = evaluation.evaluate(engine, test, m, progress=not args.json)
        results.append(
            {
                "system": f"soutui {m}" + (" (int8 query encoder)" if args.quantized else ""),
                **{k: v for k, v in res.items() if k not in ("protocol", "n_items", "n_queries")},
            }
        )

    base = float(ref["ndcg@10"])
    for r in results:
        r["ndcg@10_vs_bm25s"] = round(float(r["ndcg@10"]) / base, 3) if base else None  # type: ignore[arg-type]
    ltr = next((r for r in results if r.get("method") == "ltr"), None)
    report = {
        "benchmark": "homedepot-search",
        "protocol": evaluation.protocol(len(engine.catalog), len(test)),
        "encoders": encoders,
        "query_encoder": "onnx int8" if args.quantized else "onnx fp32",
        "n_test_queries": len(test),
        "n_train_queries": len(train),
        "results": results,
        "ltr": ltr_info,
        "goal": f"ltr NDCG@10 >= {GOAL} x bm25s",
        "goal_met": bool(ltr and float(ltr["ndcg@10_vs_bm25s"]) >= GOAL),  # type: ignore[arg-type]
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"\nprotocol: {report['protocol']}\n")
    cols = ["ndcg@10", "ndcg@5", "recall@10", "mrr@10", "map@10", "ndcg@10_vs_bm25s", "seconds"]
    print(f"{'system':42s}" + "".join(f"{c:>18s}" for c in cols))
    for r in results:
        cells = [f"{float(str(r[c])):18.4f}" if r.get(c) is not None else f"{'':>18s}" for c in cols]
        print(f"{r['system']:42s}" + "".join(cells))
    print(f"\nltr training: {ltr_info}")
    print(f"goal ({report['goal']}): {'MET' if report['goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
