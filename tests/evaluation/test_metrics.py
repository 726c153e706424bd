"""Metrics cross-checked against ranx on seeded random runs, plus hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soutui.evaluation import metrics as M

ranx = pytest.importorskip("ranx")

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


def _theirs(metric: str, qrels: dict, runs: dict) -> float:
    return float(ranx.evaluate(ranx.Qrels(qrels), ranx.Run(runs), metric))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", KS)
def test_binary_metrics_match_ranx(seed: int, k: int) -> None:
    qrels, runs = _random_runs(seed)
    pairs = [
        (M.hit_rate_at_k, f"hit_rate@{k}"),
        (M.precision_at_k, f"precision@{k}"),
        (M.recall_at_k, f"recall@{k}"),
        (M.f1_at_k, f"f1@{k}"),
        (M.reciprocal_rank, f"mrr@{k}"),
        (M.average_precision, f"map@{k}"),
        (M.ndcg_at_k, f"ndcg@{k}"),
    ]
    for fn, name in pairs:
        assert _ours(fn, qrels, runs, k) == pytest.approx(_theirs(name, qrels, runs), abs=1e-9), name


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("k", KS)
def test_graded_ndcg_matches_ranx(seed: int, k: int) -> None:
    qrels, runs = _random_runs(seed, graded=True)
    # ranx "ndcg" is Jarvelin-Kekalainen (linear gain), "ndcg_burges" uses 2^rel - 1
    linear = _ours(M.ndcg_at_k, qrels, runs, k, exponential=False)
    expo = _ours(M.ndcg_at_k, qrels, runs, k, exponential=True)
    assert linear == pytest.approx(_theirs(f"ndcg@{k}", qrels, runs), abs=1e-9)
    assert expo == pytest.approx(_theirs(f"ndcg_burges@{k}", qrels, runs), abs=1e-9)
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
