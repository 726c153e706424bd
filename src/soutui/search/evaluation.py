"""By-query search evaluation and LTR training on graded judgements (Home Depot protocol).

Protocol: queries are split 80/20 by query (`split_queries`, seed 0); each test query
retrieves its top 10 from the WHOLE catalogue; gain = relevance - 1 for judged
products (1 = irrelevant), 0 for unjudged ones; graded NDCG@k with 2^gain - 1 and the
ideal built from the query's judged products. The ranker trains on training queries
only; its early-stopping queries are carved from them, never from the test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from soutui.data.sequences import split_queries
from soutui.evaluation import metrics
from soutui.search import features as feats
from soutui.search.engine import SearchEngine
from soutui.search.ltr import LTRParams, choose_capacity

Qrels = dict[str, dict[str, float]]
KS = (5, 10)
CHOICE_ORDER = ("bm25", "dense", "hybrid", "ltr")  # cheapest first: ties go to the cheaper method


def qrels_from_events(events: pd.DataFrame) -> Qrels:
    """{query: {item_id: gain}} from search events with relevance labels (duplicates averaged)."""
    ev = events.dropna(subset=["query", "relevance", "item_id"])
    if ev.empty:
        raise ValueError(
            "this dataset has no search events with relevance labels (needs query, item_id, relevance)"
        )
    g = ev.groupby([ev["query"].astype(str), ev["item_id"].astype(str)])["relevance"].mean() - 1.0
    out: Qrels = {}
    for (q, item), gain in g.items():
        out.setdefault(q, {})[item] = float(gain)
    return out


def split(qrels: Qrels, test_frac: float = 0.2, seed: int = 0) -> tuple[Qrels, Qrels]:
    train_q, test_q = split_queries(list(qrels), test_frac=test_frac, seed=seed)
    return {q: qrels[q] for q in sorted(train_q)}, {q: qrels[q] for q in sorted(test_q)}


def protocol(n_items: int, n_queries: int, seed: int = 0) -> str:
    return (
        f"by-query split 80/20 (split_queries seed {seed}); {n_queries} test queries; top-10 retrieved from the "
        f"whole catalogue of {n_items} products; gain = relevance - 1 for judged products, 0 for unjudged; "
        "graded NDCG with 2^gain - 1 and ideal from the judged products; Recall@10 = judged relevant (gain>0) "
        "in top 10 / judged relevant; MRR/MAP count gain>0 as relevant"
    )


def score_rankings(rankings: dict[str, list[str]], qrels: Qrels) -> dict[str, float]:
    """Mean metrics over queries of `qrels` (a query with no ranking counts as all zeros)."""
    rows = []
    for q, rels in qrels.items():
        ranked = rankings.get(q, [])
        rows.append(
            {
                "ndcg@5": metrics.ndcg_at_k(ranked, rels, 5),
                "ndcg@10": metrics.ndcg_at_k(ranked, rels, 10),
                "recall@10": metrics.recall_at_k(ranked, rels, 10),
                "mrr@10": metrics.reciprocal_rank(ranked, rels, 10),
                "map@10": metrics.average_precision(ranked, rels, 10),
            }
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def run_engine(
    engine: SearchEngine, queries: list[str], method: str, k: int = 10, progress: bool = True
) -> dict[str, list[str]]:
    engine.prime_queries(queries)
    out = {}
    ids = engine.catalog.item_ids
    for q in tqdm(queries, desc=f"search ({method})", disable=not progress, unit="q"):
        out[q] = [str(x) for x in ids[engine.rank(q, method).rows[:k]]]
    return out


def evaluate(engine: SearchEngine, test: Qrels, method: str, progress: bool = True) -> dict[str, object]:
    t0 = time.time()
    rankings = run_engine(engine, list(test), method, progress=progress)
    return {
        "method": method,
        "n_queries": len(test),
        "n_items": len(engine.catalog),
        **score_rankings(rankings, test),
        "seconds": round(time.time() - t0, 1),
        "protocol": protocol(len(engine.catalog), len(test)),
    }


def ltr_data(
    engine: SearchEngine, qrels: Qrels, progress: bool = True, desc: str = "features"
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Features of every query's retrieved candidates, labelled with gain (unjudged = 0)."""
    xs, ys, groups = [], [], []
    engine.prime_queries(list(qrels))
    ids = engine.catalog.item_ids
    for q, rels in tqdm(qrels.items(), desc=desc, disable=not progress, unit="q"):
        pq = engine.parse(q)
        cand = engine.candidates(pq, None)
        if len(cand.rows) == 0:
            continue
        y = np.array([rels.get(str(ids[r]), 0.0) for r in cand.rows.tolist()])
        if not (y > 0).any():
            continue  # nothing to learn from: every ordering is equally good
        xs.append(feats.compute(pq, cand, engine.catalog, engine.bm_title, engine.bm_text))
        ys.append(y)
        groups.append(len(y))
    if not xs:
        raise ValueError("no training query retrieved any judged relevant product; cannot train the ranker")
    return np.concatenate(xs), np.concatenate(ys), groups


def train_ltr(
    engine: SearchEngine,
    train: Qrels,
    valid_frac: float = 0.1,
    seed: int = 0,
    params: LTRParams | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    folds: int | None = None,
) -> dict[str, object]:
    """Fit the ranker on `train` queries, its capacity set on held-out slices of them, attach it and save.

    `valid_frac` is the early-stopping slice when there are many queries; small judgment sets
    use k-fold by query instead (`ltr.choose_capacity`)."""
    x, y, g = ltr_data(engine, train, progress, "ltr features")
    t0 = time.time()
    ranker, capacity = choose_capacity(
        x, y, g, replace(params or LTRParams(), seed=seed), folds=folds, holdout_frac=valid_frac
    )
    engine.ranker = ranker
    engine.save()
    info = {
        "train_queries": len(g),
        "rows": int(len(y)),
        "best_iteration": capacity["n_trees"],
        "capacity": capacity,
        "fit_seconds": round(time.time() - t0, 1),
        "importance_top5": dict(list(ranker.importance().items())[:5]),
    }
    if log:
        log(f"ltr trained: {info}")
    return info


def choose_method(
    engine: SearchEngine,
    train: Qrels,
    valid_frac: float = 0.2,
    seed: int = 0,
    ltr: bool = True,
    params: LTRParams | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Choose the serving method by NDCG@10 on validation queries carved from `train` by query.

    Only `train` is read (pass the training split; the test split stays untouched). The
    ranker (when `ltr`) is trained on the other training queries, so no method has seen the
    validation queries; a tie goes to the cheaper method (order of CHOICE_ORDER). The choice
    and every figure are stored in the index manifest and become the engine's default method.
    """
    fit_q, val_q = split_queries(list(train), test_frac=valid_frac, seed=seed + 1)
    if not val_q or not fit_q:
        raise ValueError(f"{len(train)} judged training queries are too few to hold out validation queries")
    fit, val = {q: train[q] for q in sorted(fit_q)}, {q: train[q] for q in sorted(val_q)}
    out: dict[str, object] = {
        "validation": f"{len(val)} of {len(train)} training queries held out by query (split_queries "
        f"test_frac {valid_frac}, seed {seed + 1}); NDCG@10 over the whole catalogue as in `protocol`",
        "fit_queries": len(fit),
        "valid_queries": len(val),
    }
    engine.ranker = None  # a ranker from an earlier build may have seen the validation queries
    if ltr:
        out["ltr"] = train_ltr(engine, fit, seed=seed, params=params, progress=progress, log=log)
    figures: dict[str, dict[str, float]] = {}
    for m in CHOICE_ORDER:
        if m == "ltr" and engine.ranker is None:
            continue
        figures[m] = score_rankings(run_engine(engine, list(val), m, progress=progress), val)
    chosen = max(figures, key=lambda m: (figures[m]["ndcg@10"], -CHOICE_ORDER.index(m)))
    out["valid"] = {m: {k: round(v, 4) for k, v in f.items()} for m, f in figures.items()}
    out["chosen"] = chosen
    engine.default_method = chosen
    engine.save(method_choice=out)
    if log:
        log(
            f"search method chosen on validation: {chosen} { ({m: round(f['ndcg@10'], 4) for m, f in figures.items()}) }"
        )
    return out
