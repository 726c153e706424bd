"""tantivy keyword path vs the sparse BM25 reference (and bm25s), spelling correction, RRF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soutui.features.text import analyze
from soutui.search.fusion import rrf
from soutui.search.keyword import BM25Matrix, KeywordIndex
from soutui.search.spelling import SpellCorrector

DOCS = [
    "cordless drill with battery",
    "corded hammer drill",
    "garden hose 50 ft",
    "drill bit set",
    "impact driver cordless",
    "toilet seat round white",
    "white paint interior",
    "cordless drill drill kit",
    "lawn sprinkler",
    "angle bracket galvanized",
]


def test_tantivy_ranking_matches_bm25_reference(tmp_path: Path) -> None:
    toks = [analyze(d) for d in DOCS]
    ki = KeywordIndex.build(toks, toks, tmp_path / "kw")
    ki = KeywordIndex.load(tmp_path / "kw")
    bm = BM25Matrix(toks)
    for q in ["cordless drill", "white", "garden hose", "bracket"]:
        rows, scores = ki.search(analyze(q), 10)
        ref = bm.scores(analyze(q))
        # same documents, and tantivy's scores are the reference's times (title boost + text) = 3
        assert set(rows.tolist()) == set(np.flatnonzero(ref > 0).tolist())
        np.testing.assert_allclose(scores, 3 * ref[rows], rtol=2e-3)
        assert (np.diff(scores) <= 1e-6).all()


def test_bm25_matrix_equals_bm25s_lucene() -> None:
    bm25s = pytest.importorskip("bm25s")
    toks = [analyze(d) for d in DOCS]
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(toks, show_progress=False)
    mine = BM25Matrix(toks)
    for q in ["cordless drill", "white paint"]:
        # bm25s' "lucene" variant drops the constant (k1 + 1) factor that tantivy keeps
        np.testing.assert_allclose(mine.scores(analyze(q)), 2.2 * ref.get_scores(analyze(q)), rtol=1e-4)


def test_spelling_corrects_typos_to_frequent_catalogue_words() -> None:
    sc = SpellCorrector(
        ["cordless drill"] * 3 + ["toilet seat"] * 3 + ["wire"] * 5 + ["mesh"] * 5 + ["drill"]
    )
    assert sc.correct("cordles dril") == ("cordless drill", {"cordles": "cordless", "dril": "drill"})
    assert sc.correct("toliet")[0] == "toilet"
    assert sc.correct("wiremesh")[0] == "wire mesh"
    assert sc.correct("drills")[1] == {}  # known through its stem: not a typo
    assert sc.correct("xyz")[1] == {}  # too short to correct safely


def test_rrf_known_answer() -> None:
    rows, scores = rrf([np.array([1, 2, 3]), np.array([3, 1])], k=60)
    assert rows.tolist() == [1, 3, 2]
    assert scores[0] == pytest.approx(1 / 61 + 1 / 62)
    assert rrf([np.array([], np.int64)])[0].size == 0
