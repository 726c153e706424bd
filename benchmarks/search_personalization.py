"""Does personal re-ranking help search? An offline test on Amazon Beauty (12,101 products).

Protocol: users with >= 3 purchases, shuffled (seed 0) and halved into a 'tune' half (used only
to choose personal_weight) and a 'report' half; the first 2,000 usable users of the report half. Each user's LAST item
is the target, everything before it is the history (leave-one-out, time order). The query
is ONE word of the target's title: the title word (letters only, >= 4 chars, not a
stopword) that occurs in the most catalogue titles, i.e. the most generic product word
("polish", "shampoo", "cream"), so the query alone is ambiguous. Users whose query matches
fewer than 20 titles are skipped (the query would already identify the product). Each
query is answered twice by `SearchEngine.search(method="hybrid", k=10)` — without and with
`user_history` — over the whole catalogue; we report HR@10 / NDCG@10 / MRR@10 of the
target. Beauty has no brand/category columns, so the personal signal here is only the
semantic closeness to the user's 20 most recent items (MiniLM).

    .venv/bin/python benchmarks/search_personalization.py [--users 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from soutui.config import home_dir
from soutui.features.text import STOPWORDS, words
from soutui.search.engine import SearchConfig, SearchEngine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument(
        "--split",
        choices=["report", "tune"],
        default="report",
        help="disjoint user halves: tune settings on 'tune', report on 'report'",
    )
    ap.add_argument("--min-matches", type=int, default=20)
    ap.add_argument("--weight", type=float, default=None, help="override SearchConfig.personal_weight")
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from soutui.data.datasets import load_dataset

    items, events = load_dataset("amazon-beauty", progress=False)
    out = Path(args.out) if args.out else home_dir() / "indexes" / "beauty-bench"
    if not (out / "manifest.json").exists():
        SearchEngine.build(items, out, SearchConfig(encoders=["minilm"]))
    overrides = {} if args.weight is None else {"personal_weight": args.weight}
    engine = SearchEngine.load(out, **overrides)

    df: dict[str, int] = {}
    for t in engine.catalog.titles:
        for w in set(words(t)):
            df[w] = df.get(w, 0) + 1
    ev = events.dropna(subset=["user_id", "item_id"]).reset_index(drop=True)
    ev = ev.assign(_order=np.arange(len(ev))).sort_values(["user_id", "ts", "_order"], kind="stable")
    seqs = ev.groupby("user_id", sort=True)["item_id"].apply(list)
    seqs = seqs[seqs.map(len) >= 3]
    perm = np.random.default_rng(0).permutation(len(seqs))
    half = perm[: len(perm) // 2] if args.split == "report" else perm[len(perm) // 2 :]
    users = [seqs.index[i] for i in half]

    rows: list[dict[str, float]] = []
    skipped = 0
    t0 = time.time()
    bar = tqdm(total=args.users, disable=args.json, desc="users")
    for u in users:
        if len(rows) >= args.users:
            break
        seq = [str(x) for x in seqs[u]]
        target, history = seq[-1], seq[:-1]
        if target not in engine.row_of:
            continue
        cands = [
            w
            for w in set(words(engine.catalog.titles[engine.row_of[target]]))
            if w.isalpha() and len(w) >= 4 and w not in STOPWORDS
        ]
        if not cands:
            skipped += 1
            continue
        query = max(cands, key=lambda w: (df.get(w, 0), w))
        if df.get(query, 0) < args.min_matches:
            skipped += 1
            continue
        r: dict[str, float] = {}
        for name, hist in (("plain", None), ("personal", history)):
            hits, _ = engine.search(query, k=10, method="hybrid", user_history=hist)
            ids = [h.item_id for h in hits]
            rank = ids.index(target) if target in ids else None
            r[f"{name}_hr"] = float(rank is not None)
            r[f"{name}_ndcg"] = 0.0 if rank is None else 1.0 / np.log2(rank + 2)
            r[f"{name}_mrr"] = 0.0 if rank is None else 1.0 / (rank + 1)
        rows.append(r)
        bar.update(1)
    bar.close()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    res = {
        name: {
            "hr@10": round(mean[f"{name}_hr"], 4),
            "ndcg@10": round(mean[f"{name}_ndcg"], 4),
            "mrr@10": round(mean[f"{name}_mrr"], 4),
        }
        for name in ("plain", "personal")
    }
    report = {
        "benchmark": "search personalisation, amazon-beauty",
        "users": len(rows),
        "skipped_unambiguous_or_no_word": skipped,
        "personal_weight": engine.config.personal_weight,
        "split": args.split,
        "protocol": " ".join(__doc__.split("\n\n")[1].split()),
        "results": res,
        "ndcg@10_ratio": round(res["personal"]["ndcg@10"] / max(res["plain"]["ndcg@10"], 1e-12), 3),
        "seconds": round(time.time() - t0, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"protocol: {report['protocol']}\n")
        for name, m in res.items():
            print(f"{name:10s} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  MRR@10 {m['mrr@10']:.4f}")
        print(f"users {len(rows)}, NDCG@10 personal/plain = {report['ndcg@10_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
