"""Metrics cross-checked against trec_eval (pytrec_eval) on seeded random runs, plus hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soutui.evaluation import metrics as M

pytrec_eval = pytest.importorskip("pytrec_eval")

KS = (1, 3, 5, 10)


def _random_runs(seed: int, n_queries: int = 40, graded: bool = False) -> tuple[dict, dict]:
    """qrels {q: {doc: rel}} and runs {q: {doc: score}} with distinct scores (no tie ambiguity)."""
    rng = np.random.default_rng(seed)
    qrels, runs = {}, {}
    for q in range(n_queries):
        docs = [f"d{i}" for i in range(30)]
        n_rel = int(rng.integers(1, 6))
        rel_docs = rng.choice(30, n_rel, replace=False)
        qrels[f"q{q}"] = {docs[i]: int(rng.integers(1, 4)) if graded else 1 for i in rel_docs}
        retrieved = rng.choice(30, int(rng.integers(5, 30)), replace=False)
        scores = rng.permutation(len(retrieved)) + rng.uniform(0, 0.5)
        runs[f"q{q}"] = {docs[i]: float(s) for i, s in zip(retrieved, scores, strict=True)}
    return qrels, runs


def _ranked(run: dict[str, float]) -> list[str]:
    return sorted(run, key=lambda d: -run[d])


def _ours(fn, qrels: dict, runs: dict, k: int, **kw) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean([fn(_ranked(runs[q]), qrels[q], k, **kw) for q in qrels]))


def _trec(qrels: dict, runs: dict, measure: str, k: int) -> dict[str, dict[str, float]]:
    """trec_eval's per-query figures for `measure` at cutoff k (e.g. "P" -> key "P_k")."""
    return pytrec_eval.RelevanceEvaluator(qrels, {f"{measure}.{k}"}).evaluate(runs)  # type: ignore[no-any-return]


def _theirs(name: str, qrels: dict, runs: dict, k: int) -> float:
    """trec_eval's mean over queries of the metric our function `name` computes at k."""
    trec = {"hit_rate": "success", "precision": "P", "recall": "recall", "map": "map_cut", "ndcg": "ndcg_cut"}
    if name in trec:
        per_query = _trec(qrels, runs, trec[name], k)
        return float(np.mean([v[f"{trec[name]}_{k}"] for v in per_query.values()]))
    if name == "f1":  # harmonic mean of trec_eval's P@k and recall@k, per query
        p, r = _trec(qrels, runs, "P", k), _trec(qrels, runs, "recall", k)
        pr = [(p[q][f"P_{k}"], r[q][f"recall_{k}"]) for q in p]
        return float(np.mean([0.0 if a + b == 0 else 2 * a * b / (a + b) for a, b in pr]))
    if name == "mrr":  # trec_eval's recip_rank has no cutoff: give it each run's top k only
        top = {q: {d: runs[q][d] for d in _ranked(runs[q])[:k]} for q in runs}
        per_query = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top)
        return float(np.mean([v["recip_rank"] for v in per_query.values()]))
    raise KeyError(name)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", KS)
def test_binary_metrics_match_trec_eval(seed: int, k: int) -> None:
    qrels, runs = _random_runs(seed)
    pairs = [
        (M.hit_rate_at_k, "hit_rate"),
        (M.precision_at_k, "precision"),
        (M.recall_at_k, "recall"),
        (M.f1_at_k, "f1"),
        (M.reciprocal_rank, "mrr"),
        (M.average_precision, "map"),
        (M.ndcg_at_k, "ndcg"),
    ]
    for fn, name in pairs:
        assert _ours(fn, qrels, runs, k) == pytest.approx(_theirs(name, qrels, runs, k), abs=1e-9), name


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("k", KS)
def test_graded_ndcg_matches_trec_eval(seed: int, k: int) -> None:
    qrels, runs = _random_runs(seed, graded=True)
    # trec_eval's ndcg_cut is Jarvelin-Kekalainen (the judged grade is the gain); judged with 2^rel - 1
    # as the grade it is the exponential-gain NDCG (Burges et al.)
    exp_qrels = {q: {d: 2**r - 1 for d, r in rels.items()} for q, rels in qrels.items()}
    linear = _ours(M.ndcg_at_k, qrels, runs, k, exponential=False)
    expo = _ours(M.ndcg_at_k, qrels, runs, k, exponential=True)
    assert linear == pytest.approx(_theirs("ndcg", qrels, runs, k), abs=1e-9)
    assert expo == pytest.approx(_theirs("ndcg", exp_qrels, runs, k), abs=1e-9)
    if k >= 3:
        assert linear != pytest.approx(expo)  # graded data: the two gains really differ


def test_known_answers_by_hand() -> None:
    ranked = ["a", "b", "c", "d"]
    rels = {"b": 1, "d": 1, "z": 1}  # z is relevant but never retrieved
    assert M.precision_at_k(ranked, rels, 4) == 0.5
    assert M.recall_at_k(ranked, rels, 4) == pytest.approx(2 / 3)
    assert M.f1_at_k(ranked, rels, 4) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert M.hit_rate_at_k(ranked, rels, 1) == 0.0 and M.hit_rate_at_k(ranked, rels, 2) == 1.0
    assert M.reciprocal_rank(ranked, rels) == 0.5
    assert M.average_precision(ranked, rels) == pytest.approx((1 / 2 + 2 / 4) / 3)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(ranked, rels, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    # graded, exponential gain: rel 3 at rank 2, rel 1 at rank 1; ideal puts 3 first
    g = {"a": 1, "b": 3}
    dcg = (2**1 - 1) + (2**3 - 1) / math.log2(3)
    assert M.ndcg_at_k(["a", "b"], g, 2) == pytest.approx(dcg / ((2**3 - 1) + 1 / math.log2(3)))
    assert M.ndcg_at_k(["a", "b"], g, 2, exponential=False) == pytest.approx(
        (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    )
    # nothing relevant: every metric is 0, never a division error
    for fn in (M.recall_at_k, M.ndcg_at_k, M.f1_at_k):
        assert fn(ranked, {}, 3) == 0.0


@pytest.mark.parametrize("k", (1, 5, 10, 20))
def test_from_ranks_forms_equal_list_forms(k: int) -> None:
    """With one held-out target, the closed forms equal the general list metrics."""
    rng = np.random.default_rng(7)
    ranks = rng.integers(0, 40, 300)
    lists = [[f"x{i}" for i in range(40)] for _ in ranks]
    rels = [{f"x{r}": 1} for r in ranks]

    def mean(fn) -> float:  # type: ignore[no-untyped-def]
        return float(np.mean([fn(lst, rel, k) for lst, rel in zip(lists, rels, strict=True)]))

    assert M.hr_from_ranks(ranks, k) == pytest.approx(mean(M.hit_rate_at_k))
    assert M.hr_from_ranks(ranks, k) == pytest.approx(mean(M.recall_at_k))
    assert M.precision_from_ranks(ranks, k) == pytest.approx(mean(M.precision_at_k))
    assert M.f1_from_ranks(ranks, k) == pytest.approx(mean(M.f1_at_k))
    assert M.ndcg_from_ranks(ranks, k) == pytest.approx(mean(M.ndcg_at_k))
    assert M.mrr_from_ranks(ranks, k) == pytest.approx(mean(M.reciprocal_rank))
    assert M.map_from_ranks(ranks, k) == pytest.approx(mean(M.average_precision))
    assert M.hr_from_ranks(np.array([], np.int64), k) == 0.0
