"""Keyword retrieval and scoring: one sparse BM25 scorer (title-boosted) for every query.

Text is tokenised in Python (`soutui.features.text.analyze`: stemmed English, jieba
Chinese), so one tokeniser serves catalogue and queries and mixed Chinese/English
text works. `KeywordScorer` scores a query as TITLE_BOOST x BM25(title) + BM25(text)
over a single precombined sparse matrix; the unfiltered and the filtered search both
take their top-k from these same scores (a filter is a mask over them), so a filter
can never change the relative order of the items that pass it. Earlier versions used
tantivy without filters and a text-only BM25 with them; the tests keep tantivy as the
reference the scorer is compared with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

TITLE_BOOST = 2.0
K1, B = 1.2, 0.75  # Lucene/tantivy BM25 constants


class BM25Matrix:
    """Okapi BM25 term weights as a sparse (docs x terms) matrix: score(q, d) = sum of W[d, q terms]."""

    def __init__(self, docs: list[list[str]], k1: float = K1, b: float = B) -> None:
        # term ids in first-occurrence order (hash factorisation: ~10x faster than a dict loop at load)
        lengths = np.fromiter((len(t) for t in docs), np.int64, len(docs))
        flat = np.fromiter((t for toks in docs for t in toks), object, int(lengths.sum()))
        cols, terms = pd.factorize(flat) if len(flat) else (np.zeros(0, np.int64), np.zeros(0, object))
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(terms.tolist())}
        rows = np.repeat(np.arange(len(docs)), lengths)
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


class KeywordScorer:
    """The one keyword relevance function: TITLE_BOOST x BM25(title) + BM25(text), each with its own stats.

    `text` tokens include the title's (title + brand + category + description), so a
    title word counts in both fields, as in a boosted two-field Lucene query.
    """

    def __init__(
        self, title_tokens: list[list[str]], text_tokens: list[list[str]], title_boost: float = TITLE_BOOST
    ) -> None:
        self.title = BM25Matrix(title_tokens)
        self.text = BM25Matrix(text_tokens)
        self.title_boost = title_boost
        self.vocab = dict(self.text.vocab)
        for t in self.title.vocab:  # titles are part of text, but stay safe for any caller's tokens
            self.vocab.setdefault(t, len(self.vocab))
        n, v = self.text.weights.shape[0], max(len(self.vocab), 1)
        tw = self.title.weights.tocoo()
        to_col = np.array([self.vocab[t] for t in self.title.vocab], np.int64)
        xw = self.text.weights.tocoo()
        combined = sp.csc_matrix(
            (
                np.concatenate([title_boost * tw.data, xw.data]).astype(np.float32),
                (np.concatenate([tw.row, xw.row]), np.concatenate([to_col[tw.col], xw.col])),
            ),
            shape=(n, v),
        )
        combined.sum_duplicates()
        self.weights = combined  # (N, V) CSC: a query's postings are a few column slices
        self.n_docs = n

    def __len__(self) -> int:
        return self.n_docs

    def _cols(self, tokens: list[str]) -> list[int]:
        return [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]

    def matches(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of every document that contains a query token, rows ascending."""
        w = self.weights
        spans = [(w.indptr[j], w.indptr[j + 1]) for j in self._cols(tokens)]
        if not spans:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx = np.concatenate([w.indices[a:b] for a, b in spans])
        val = np.concatenate([w.data[a:b] for a, b in spans])
        rows, inv = np.unique(idx, return_inverse=True)
        return rows.astype(np.int64), np.bincount(inv, weights=val).astype(np.float32)

    def scores(self, tokens: list[str], rows: np.ndarray | None = None) -> np.ndarray:
        """Scores for all docs (N,), or for `rows` only; 0 where no token matches."""
        out = np.zeros(self.n_docs, np.float32)
        hit, s = self.matches(tokens)
        out[hit] = s
        return out if rows is None else out[rows]

    def top(self, tokens: list[str], k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) among matching docs that pass `mask`, best first, ties by row."""
        rows, s = self.matches(tokens)
        if mask is not None:
            keep = mask[rows]
            rows, s = rows[keep], s[keep]
        if len(rows) > k > 0:  # keep everything at or above the k-th score, so ties are cut by row below
            keep = s >= np.partition(s, len(s) - k)[len(s) - k]
            rows, s = rows[keep], s[keep]
        order = np.lexsort((rows, -s))[: max(k, 0)]
        return rows[order], s[order]
