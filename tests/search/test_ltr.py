"""LTR features and ranker: known feature values, grade mapping, and a ranker that learns a clear signal."""

from __future__ import annotations

import numpy as np

from soutui.search import features as feats
from soutui.search.engine import SearchEngine
from soutui.search.ltr import LTRParams, LTRRanker, gain_to_grade

from .catalog_fixture import item_id


def test_features_of_an_exact_title_match(engine: SearchEngine) -> None:
    q = engine.parse("kohler round closed front toilet seat in white")
    cand = engine.candidates(q, None)
    x = feats.compute(q, cand, engine.catalog, engine.bm_title, engine.bm_text)
    assert x.shape == (len(cand.rows), len(feats.FEATURES))
    col = {n: i for i, n in enumerate(feats.FEATURES)}
    target = list(cand.rows).index(engine.row_of[item_id("Kohler Round")])
    row = x[target]
    assert row[col["exact_phrase"]] == 1 and row[col["q_coverage"]] == 1 and row[col["bigram_frac"]] == 1
    assert row[col["bm25_title_rel"]] == 0  # the best BM25 among candidates
    assert row[col["log_price"]] == np.float32(np.log1p(42.0))
    assert np.isnan(x[:, col["numeric_match"]]).all()  # no numbers in the query
    assert row[col["cos_minilm"]] == x[:, col["cos_minilm"]].max()


def test_sizes_match_however_they_are_written(engine: SearchEngine) -> None:
    col = {n: i for i, n in enumerate(feats.FEATURES)}
    for query, title in [("rheem 40 gallon water heater", "Rheem 40"), ("12ga angle bracket", "Simpson"),
                         ("60-watt light bulb", "Philips LED")]:  # fmt: skip
        q = engine.parse(query)
        cand = engine.candidates(q, None)
        x = feats.compute(q, cand, engine.catalog, engine.bm_title, engine.bm_text)
        rows = list(cand.rows)
        assert x[rows.index(engine.row_of[item_id(title)]), col["size_match"]] == 1, query
        others = [i for i, r in enumerate(rows) if r != engine.row_of[item_id(title)]]
        assert (x[others, col["size_match"]] == 0).all(), query  # no other product has that size
    q = engine.parse("cordless drill")
    x = feats.compute(q, engine.candidates(q, None), engine.catalog, engine.bm_title, engine.bm_text)
    assert np.isnan(x[:, col["size_match"]]).all()  # no size in the query


def test_gain_to_grade_matches_home_depot_thirds() -> None:
    assert gain_to_grade(np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0, 2.0, -0.1])).tolist() == [0, 1, 2, 2, 3, 6, 0]


def test_ranker_learns_a_clear_signal() -> None:
    rng = np.random.default_rng(0)

    def make(n_q: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        x = rng.normal(size=(n_q * 20, len(feats.FEATURES))).astype(np.float32)
        gain = np.clip(np.round(x[:, 0] * 2) / 3, 0, 2)  # relevance driven by feature 0 only
        return x, gain, [20] * n_q

    x, y, g = make(200)
    xv, yv, gv = make(50)
    ranker = LTRRanker().fit(x, y, g, xv, yv, gv, LTRParams(n_estimators=50, min_data_in_leaf=10))
    xt, yt, _ = make(1)
    order = np.argsort(-ranker.predict(xt))
    assert yt[order[0]] == yt.max()
    assert next(iter(ranker.importance())) == feats.FEATURES[0]
