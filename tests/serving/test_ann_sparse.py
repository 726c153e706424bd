"""The rules layer on the ANN candidate set alone (serving/candidates.py) against the reference:
`rules.select` over the catalogue-long vector that is exact on the candidates and -inf elsewhere
(`AnnRetriever.scores`), with the catalogue-long allowed mask. A real SASRec exported to ONNX over
3,000 items with structure (clusters, Zipf bias, seen penalty, co-occurrence head), a real IVF index,
and every rule: stock, category, exclusions, pins and boosts inside and outside the candidates,
diversity, k from 1 to 30."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

N_ITEMS, N_CLUSTERS, D = 3000, 30, 16


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from soutui.models.sasrec import SASRec, SASRecConfig
    from soutui.models.sasrec_onnx import OnnxScorer, export_onnx
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.serving.ann import AnnConfig, AnnRetriever
    from soutui.serving.bundle import Catalogue

    torch.set_num_threads(1)
    cfg = SASRecConfig(n_items=N_ITEMS, max_len=20, d_model=D, n_layers=1, n_heads=2, dropout=0.0,
                       emb_dropout=0.0, id_dropout=0.0, use_time=False, cooc_neighbors=8)  # fmt: skip
    torch.manual_seed(0)
    net = SASRec(cfg).eval()
    rng = np.random.default_rng(0)
    cluster = rng.integers(N_CLUSTERS, size=N_ITEMS)
    with torch.no_grad():
        vecs = rng.normal(size=(N_CLUSTERS, D))[cluster] + 0.6 * rng.normal(size=(N_ITEMS, D))
        net.items.id_emb.weight[1:] = torch.from_numpy(vecs).float()
        pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
        assert net.bias is not None and net.seen_w is not None
        net.bias[1:] = torch.from_numpy(np.log(rng.permutation(pop) / pop.sum())).float() * 0.3
        net.seen_w.fill_(-2.0)
        same = [np.flatnonzero(cluster == c) for c in range(N_CLUSTERS)]
        table = np.vstack([np.zeros((1, 8), np.int64), np.stack([rng.choice(same[c], 8) for c in cluster]) + 1])
        val = np.vstack([np.zeros((1, 8)), rng.uniform(0.1, 1.0, (N_ITEMS, 8))])
        net.set_cooccurrence(torch.from_numpy(table), torch.from_numpy(val).float())
        net.cooc_alpha.fill_(0.5)
    model = SASRecRecommender(max_len=20, d_model=D, use_time=False)
    model.net_ = net
    out = Path(tmp_path_factory.mktemp("ann-sparse"))
    export_onnx(model, out)
    scorer = OnnxScorer(out).candidate_scorer()
    assert scorer is not None
    retriever = AnnRetriever(scorer, AnnConfig(min_items=1, candidates=150, nprobe=8))
    cats = [f"Dept{c % 4} > Shelf{c}" for c in cluster]  # 4 departments, 30 shelves
    ids = np.array([f"i{j}" for j in range(N_ITEMS)], dtype=object)
    catalogue = Catalogue(ids, [f"item {j}" for j in range(N_ITEMS)], cats, [f"b{j % 17}" for j in range(N_ITEMS)],
                          np.full(N_ITEMS, np.nan), rng.random(N_ITEMS) > 0.15)  # fmt: skip
    v = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    histories = []
    for _ in range(40):  # each user browses one or two clusters
        pool = np.concatenate([same[c] for c in rng.integers(N_CLUSTERS, size=2)])
        histories.append(rng.choice(pool, int(rng.integers(2, 20))).astype(np.int64))
    return {"retriever": retriever, "catalogue": catalogue, "vectors": v / np.linalg.norm(v, axis=1, keepdims=True),
            "histories": histories, "cluster": cluster}


def _case(rng: random.Random, hist: np.ndarray, inside: np.ndarray, cluster: np.ndarray) -> dict[str, Any]:
    """A request's rules: pins and boosts drawn from inside and outside the candidates."""
    from soutui.serving.settings import RulesConfig

    outside = [int(x) for x in rng.sample(range(N_ITEMS), 6)]
    some = [int(x) for x in rng.sample(inside.tolist(), min(4, len(inside)))]
    return {
        "k": rng.choice([1, 5, 10, 30]),
        "cfg": RulesConfig(in_stock_only=rng.random() < 0.7, boost=rng.choice([0.2, 5.0]),
                           max_per_category=rng.choice([1, 2]), candidates=rng.choice([10, 50, 200])),  # fmt: skip
        "category": rng.choice([None, None, f"Dept{int(cluster[hist[-1]]) % 4}", f"Shelf{int(cluster[hist[0]])}",
                                "dept1", "no such"]),  # fmt: skip
        "exclude": hist if rng.random() < 0.5 else None,
        "pinned": rng.sample(some + outside, rng.choice([0, 0, 2])),
        "boosted": rng.sample(some + outside, rng.choice([0, 3, 6])),
        "diverse": rng.random() < 0.4,
    }


def test_rules_on_the_candidates_alone_pick_what_they_pick_over_the_catalogue(served: dict[str, Any]) -> None:
    from soutui.serving import rules
    from soutui.serving.candidates import select_candidates

    retriever, cat, vectors = served["retriever"], served["catalogue"], served["vectors"]
    rng = random.Random(0)
    answered = fallbacks = 0
    for hist in served["histories"]:
        full = retriever.scores(hist)  # the reference: (I,) exact on the candidates, -inf elsewhere
        inside = np.flatnonzero(np.isfinite(full))
        assert 150 <= len(inside) < N_ITEMS // 10
        items, scores = retriever.candidate_scores(hist)
        assert np.array_equal(items, inside) and np.array_equal(scores, full[inside])
        for _ in range(12):
            c = _case(rng, hist, inside, served["cluster"])
            allowed = rules.allowed_mask(cat, c["cfg"], c["category"], c["exclude"])
            want = rules.select(full, allowed, c["k"], c["cfg"], cat, vectors, pinned=c["pinned"],
                                boosted=c["boosted"], diverse=c["diverse"])  # fmt: skip
            got = select_candidates(retriever, hist, None, c["k"], c["cfg"], cat, vectors, category=c["category"],
                                    exclude=c["exclude"], pinned=c["pinned"], boosted=c["boosted"], diverse=c["diverse"])  # fmt: skip
            if got is None:  # the service then scores the catalogue in full, as the dense path did
                assert np.count_nonzero(allowed & np.isfinite(full)) < c["k"], c
                fallbacks += 1
                continue
            answered += 1
            assert [(i, p) for i, _, p in got] == [(i, p) for i, _, p in want], c
            assert [s for _, s, _ in got] == [s for _, s, _ in want], c
            assert all(np.isfinite(s) for _, s, _ in got), c  # a boosted item outside the candidates is not lifted
    assert answered >= 300 and fallbacks >= 20, (answered, fallbacks)  # both paths exercised
