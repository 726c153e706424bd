"""The tuned-ALS peer (benchmarks/peer_als_tuned.py): the search reads validation only, the refit
reproduces the chosen trial, and its BM25 / TF-IDF weights are implicit's own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("implicit")
pytest.importorskip("optuna")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peer_als_tuned import run, tune  # noqa: E402
from peers_implicit import ImplicitALS, ItemUserWeighting, binary_matrix  # noqa: E402

from soutui.data.sequences import LeaveOneOut, SequenceData, leave_one_out  # noqa: E402
from soutui.evaluation.protocol import evaluate_full_ranking  # noqa: E402

N_ITEMS = 30


def noisy_cycles(n_users: int = 120, seed: int = 0) -> LeaveOneOut:
    """Users walk a cycle over 30 items with random jumps, so validation and test targets differ
    (each user's last two items are different items) and so do the two metrics."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        item, seq = int(rng.integers(N_ITEMS)), []
        for _ in range(int(rng.integers(5, 10))):
            seq.append(item)
            item = (item + (1 if rng.random() < 0.7 else int(rng.integers(2, N_ITEMS)))) % N_ITEMS
        seqs.append(np.array(seq))
    ids = np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object)
    users = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    return leave_one_out(SequenceData(ids, users, seqs))


def test_objective_reads_validation_never_test() -> None:
    split = noisy_cycles()
    assert (split.valid.targets != split.test.targets).all()
    study = tune(split.train, split.valid, trials=4, minutes=0, seed=0)
    differs = 0
    for t in study.trials:
        rec = ImplicitALS(**t.params, seed=0).fit(split.train)
        valid = evaluate_full_ranking(rec, split.valid, N_ITEMS, (10,))["NDCG@10"]
        test = evaluate_full_ranking(rec, split.test, N_ITEMS, (10,))["NDCG@10"]
        assert t.value == pytest.approx(valid, abs=1e-9)
        differs += abs(test - valid) > 1e-4
    assert differs >= 3  # the two splits really give different figures, so the check above means something


def test_refit_reproduces_the_best_trial_and_reports_seeds() -> None:
    split = noisy_cycles(seed=1)
    args = argparse.Namespace(
        trials=3, minutes=0, sampler_seed=0, threads=1, seed_list=[0, 1], objective="kept",
        start=['{"factors": 40, "regularization": 0.5, "alpha": 2.0, "iterations": 12, "weighting": "none"}'],
    )
    out = run(split, args)
    assert out["trials_done"] == 3
    assert out["trajectory"][0]["params"]["factors"] == 40  # the given start point is tried first
    assert out["best_valid_NDCG@10"] == max(t["valid_NDCG@10"] for t in out["trajectory"])
    seed0 = out["refits"][0]
    assert seed0["seed"] == 0 and seed0["valid"]["NDCG@10"] == pytest.approx(
        out["best_valid_NDCG@10"], abs=1e-6
    )
    assert out["summary"]["test NDCG@10"]["n"] == 2
    assert [r["params"]["seed"] for r in out["refits"]] == [0, 1]


@pytest.mark.parametrize("kind", ["bm25", "tfidf"])
def test_weighting_equals_implicits_on_the_training_matrix(kind: str) -> None:
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    rng = np.random.default_rng(0)
    ui = binary_matrix([rng.choice(N_ITEMS, int(rng.integers(1, 12))) for _ in range(50)], N_ITEMS)
    ours = ItemUserWeighting(kind, K1=7.0, B=0.6).fit(ui).transform(ui).toarray()
    item_users = sp.csr_matrix(ui.T)
    ref = (bm25_weight(item_users, K1=7.0, B=0.6) if kind == "bm25" else tfidf_weight(item_users)).T.toarray()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    # a history folded in later is weighted with the training statistics, like a training row
    row = ItemUserWeighting(kind, K1=7.0, B=0.6).fit(ui).transform(ui[3]).toarray()
    np.testing.assert_allclose(row[0], ref[3], rtol=1e-5, atol=1e-6)


def test_best_parameters_at_a_bound_are_flagged() -> None:
    from peer_als_tuned import at_edges

    flagged = at_edges(
        {"factors": 100, "alpha": 0.0101, "regularization": 990.0, "iterations": 47, "weighting": "bm25"}
    )
    assert [f.split("=")[0] for f in flagged] == ["alpha", "regularization"]
    assert "lower" in flagged[0] and "upper" in flagged[1]
    assert at_edges({"factors": 100, "B": 0.5}) == []
