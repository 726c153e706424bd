"""Keyword retrieval: a tantivy index over pre-tokenised text, and a sparse BM25 reference.

Text is tokenised in Python (`soutui.features.text.analyze`: stemmed English, jieba
Chinese) and handed to tantivy as space-joined tokens with a whitespace+lowercase
analyzer, so one tokeniser serves catalogue and queries and mixed Chinese/English
text works. `BM25Matrix` computes the same Okapi BM25 with scipy; it is the
reference the tantivy path is tested against and the source of BM25 features for
candidates that came from the semantic index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import tantivy

ANALYZER = "soutui_ws"
TITLE_BOOST = 2.0
K1, B = 1.2, 0.75  # tantivy's BM25 constants


def _register(index: tantivy.Index) -> None:
    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).filter(tantivy.Filter.lowercase()).build()
    )
    index.register_tokenizer(ANALYZER, analyzer)


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("idx", stored=True, fast=True, indexed=False)
    sb.add_text_field("title", stored=False, tokenizer_name=ANALYZER, index_option="freq")
    sb.add_text_field("text", stored=False, tokenizer_name=ANALYZER, index_option="freq")
    return sb.build()


class KeywordIndex:
    """tantivy BM25 over `title` (boosted) and `text` (title+brand+category+description)."""

    def __init__(self, index: tantivy.Index) -> None:
        self.index = index
        self.schema = index.schema
        self.searcher = index.searcher()
        # map tantivy (segment, doc) -> catalogue row, read once: stored-field fetches per hit are slow
        self._rows = self._row_map()

    @classmethod
    def build(cls, title_tokens: list[list[str]], text_tokens: list[list[str]], out: Path) -> KeywordIndex:
        out.mkdir(parents=True, exist_ok=True)
        index = tantivy.Index(_schema(), path=str(out), reuse=False)
        _register(index)
        writer = index.writer(heap_size=100_000_000, num_threads=1)
        for i, (tt, xt) in enumerate(zip(title_tokens, text_tokens, strict=True)):
            writer.add_document(tantivy.Document(idx=i, title=" ".join(tt), text=" ".join(xt)))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return cls(index)

    @classmethod
    def load(cls, out: Path) -> KeywordIndex:
        index = tantivy.Index.open(str(out))
        _register(index)
        return cls(index)

    def _row_map(self) -> dict[tuple[int, int], int]:
        n = self.searcher.num_docs
        res = self.searcher.search(tantivy.Query.all_query(), limit=max(n, 1))
        return {(a.segment_ord, a.doc): int(self.searcher.doc(a)["idx"][0]) for _, a in res.hits}

    def query(self, tokens: list[str]) -> tantivy.Query:
        clauses = []
        for tok in dict.fromkeys(tokens):
            clauses.append(
                (
                    tantivy.Occur.Should,
                    tantivy.Query.boost_query(
                        tantivy.Query.term_query(self.schema, "title", tok), TITLE_BOOST
                    ),
                )
            )
            clauses.append((tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", tok)))
        return tantivy.Query.boolean_query(clauses)

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the top-k documents matching any token, best first."""
        if not tokens:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        hits = self.searcher.search(self.query(tokens), limit=k, count=False).hits
        rows = np.fromiter((self._rows[(a.segment_ord, a.doc)] for _, a in hits), np.int64, len(hits))
        scores = np.fromiter((s for s, _ in hits), np.float32, len(hits))
        return rows, scores


class BM25Matrix:
    """Okapi BM25 term weights as a sparse (docs x terms) matrix: score(q, d) = sum of W[d, q terms]."""

    def __init__(self, docs: list[list[str]], k1: float = K1, b: float = B) -> None:
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, toks in enumerate(docs):
            for t in toks:
                rows.append(i)
                cols.append(self.vocab.setdefault(t, len(self.vocab)))
        n, v = len(docs), max(len(self.vocab), 1)
        tf = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, v))
        tf.sum_duplicates()
        dl = np.asarray(tf.sum(axis=1)).ravel()
        avgdl = max(dl.mean(), 1e-9) if n else 1.0
        df = np.bincount(tf.indices, minlength=v)
        self.idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * dl / avgdl)  # (N,)
        w = tf.tocoo()
        data = self.idf[w.col] * w.data * (k1 + 1) / (w.data + norm[w.row])
        self.weights = sp.csc_matrix((data.astype(np.float32), (w.row, w.col)), shape=(n, v))
        self.weights_by_doc = self.weights.tocsr()  # row slices for candidate scoring
        self.doc_len = dl.astype(np.float32)

    def cols(self, tokens: list[str]) -> list[int]:
        return [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]

    def scores(self, tokens: list[str], rows: np.ndarray | None = None) -> np.ndarray:
        """BM25 of the query for all docs (N,), or for `rows` only."""
        c = self.cols(tokens)
        w = self.weights if rows is None else self.weights_by_doc[rows]
        if not c:
            return np.zeros(w.shape[0], np.float32)
        return np.asarray(w[:, c].sum(axis=1)).ravel()

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(tokens)
        nz = np.flatnonzero(s > 0)
        top = nz[np.argsort(-s[nz], kind="stable")[:k]]
        return top, s[top]
