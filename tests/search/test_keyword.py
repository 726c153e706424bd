"""The keyword scorer vs tantivy and bm25s (references), filter invariance, spelling correction, RRF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soutui.features.text import analyze
from soutui.search.fusion import rrf
from soutui.search.keyword import TITLE_BOOST, BM25Matrix, KeywordScorer
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


def _tantivy_search(
    title: list[list[str]], text: list[list[str]], out: Path, tokens: list[str]
) -> tuple[list[int], list[float]]:
    """The reference: a two-field tantivy index, title boosted, queried with one Should clause per field and token."""
    tantivy = pytest.importorskip("tantivy")
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("idx", stored=True)
    sb.add_text_field("title", tokenizer_name="ws", index_option="freq")
    sb.add_text_field("text", tokenizer_name="ws", index_option="freq")
    schema = sb.build()
    out.mkdir()
    index = tantivy.Index(schema, path=str(out))
    index.register_tokenizer("ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    for i, (a, b) in enumerate(zip(title, text, strict=True)):
        writer.add_document(tantivy.Document(idx=i, title=" ".join(a), text=" ".join(b)))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    clauses = []
    for tok in dict.fromkeys(tokens):
        tq = tantivy.Query.term_query(schema, "title", tok)
        clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(tq, TITLE_BOOST)))
        clauses.append((tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", tok)))
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.boolean_query(clauses), limit=len(title)).hits
    return [int(searcher.doc(a)["idx"][0]) for _, a in hits], [float(sc) for sc, _ in hits]


# titles differ from texts (brand + category words live only in text), so the title boost matters
TITLES = [
    "cordless drill",
    "hammer drill",
    "garden hose",
    "drill bit set",
    "impact driver",
    "toilet seat",
    "white paint",
    "drill kit",
    "lawn sprinkler",
    "angle bracket",
]
EXTRA = [
    "dewalt tools",
    "bosch tools corded",
    "gilmour garden",
    "dewalt drill accessories",
    "makita cordless tools",
    "kohler bath white",
    "behr paint",
    "ryobi cordless drill",
    "orbit garden",
    "simpson hardware",
]


@pytest.mark.parametrize("query", ["cordless drill", "white", "garden hose", "drill", "tools"])
def test_scorer_matches_tantivy_two_field_reference(tmp_path: Path, query: str) -> None:
    title = [analyze(t) for t in TITLES]
    text = [analyze(f"{t} {e}") for t, e in zip(TITLES, EXTRA, strict=True)]
    scorer = KeywordScorer(title, text)
    ref_rows, ref_scores = _tantivy_search(title, text, tmp_path / "kw", analyze(query))
    rows, scores = scorer.top(analyze(query), len(TITLES))
    assert set(rows.tolist()) == set(ref_rows)
    # tantivy stores field lengths in one byte (lossy), hence the tolerance
    np.testing.assert_allclose(scorer.scores(analyze(query), np.array(ref_rows)), ref_scores, rtol=0.05)
    np.testing.assert_allclose(
        scores,
        TITLE_BOOST * scorer.title.scores(analyze(query), rows) + scorer.text.scores(analyze(query), rows),
        rtol=1e-5,
    )
    assert (np.diff(scores) <= 0).all()


def test_filter_keeps_the_unfiltered_order() -> None:
    title = [analyze(t) for t in TITLES]
    text = [analyze(f"{t} {e}") for t, e in zip(TITLES, EXTRA, strict=True)]
    scorer = KeywordScorer(title, text)
    q = analyze("cordless drill tools")
    rows, _ = scorer.top(q, 10)
    # a title match outranks a text-only match: the boost is applied on both paths
    assert rows[0] == 0 and set(rows[:3].tolist()) >= {0, 7}
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random(len(TITLES)) < 0.6
        got, _ = scorer.top(q, 10, mask)
        assert got.tolist() == [r for r in rows.tolist() if mask[r]]
    assert scorer.top(q, 2)[0].tolist() == rows[:2].tolist()


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
