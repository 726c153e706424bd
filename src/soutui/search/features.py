"""Learning-to-rank features for (query, candidate) pairs, computed per query in one pass.

Each feature is cheap and explainable: lexical match (BM25, coverage, phrase, bigram,
numbers, sizes, head noun), semantic similarity (every encoder in the index), retrieval
ranks, and item priors (price, popularity). NaN means "not applicable" (LightGBM
treats it as missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soutui.features.text import analyze, normalize, sizes
from soutui.search.catalog import Catalog
from soutui.search.keyword import BM25Matrix
from soutui.search.query import ParsedQuery

FEATURES: tuple[str, ...] = (
    "bm25_title",
    "bm25_text",
    "bm25_title_rel",
    "kw_rank",
    "cos_minilm",
    "cos_minilm_rel",
    "rank_minilm",
    "cos_use",
    "cos_use_rel",
    "rank_use",
    "rrf",
    "q_coverage",
    "q_coverage_text",
    "q_idf_coverage",
    "title_coverage",
    "exact_phrase",
    "last_token",
    "first_token",
    "bigram_frac",
    "numeric_match",
    "size_match",
    "trigram_jaccard",
    "n_query_tokens",
    "title_len",
    "n_fixes",
    "brand_match",
    "category_match",
    "log_price",
    "log_popularity",
)


@dataclass
class Candidates:
    """Union of retrieved rows with each retriever's rank (1-based; 0 = not retrieved by it)."""

    rows: np.ndarray  # (C,)
    ranks: dict[str, np.ndarray]  # retriever name -> (C,) int
    cos: dict[str, np.ndarray]  # encoder name -> (C,) cosine
    rrf: np.ndarray  # (C,)


def _trigrams(s: str) -> set[str]:
    s = f" {s} "
    return {s[i : i + 3] for i in range(len(s) - 2)}


@lru_cache(maxsize=100_000)
def _category_tokens(category: str) -> frozenset[str]:
    return frozenset(analyze(category))


def _rel(x: np.ndarray) -> np.ndarray:
    m = np.nanmax(x) if len(x) and not np.all(np.isnan(x)) else 0.0
    return x - m


COL = {n: i for i, n in enumerate(FEATURES)}


def compute(
    q: ParsedQuery, cand: Candidates, cat: Catalog, bm_title: BM25Matrix, bm_text: BM25Matrix
) -> np.ndarray:
    """(C, len(FEATURES)) float32 features for one query's candidates."""
    f = np.full((len(cand.rows), len(FEATURES)), np.nan, np.float32)
    _retrieval_features(f, q, cand, cat, bm_title, bm_text)
    if q.tokens:
        _match_features(f, q, cand.rows, cat, bm_title)
    return f


def _retrieval_features(
    f: np.ndarray, q: ParsedQuery, cand: Candidates, cat: Catalog, bm_title: BM25Matrix, bm_text: BM25Matrix
) -> None:
    """Keyword and dense scores and ranks, fusion, and the query's and items' own figures."""
    col, rows, toks = COL, cand.rows, q.tokens
    f[:, col["bm25_title"]] = bm_title.scores(toks, rows)
    f[:, col["bm25_text"]] = bm_text.scores(toks, rows)
    f[:, col["bm25_title_rel"]] = _rel(f[:, col["bm25_title"]])
    kw = cand.ranks.get("keyword")
    f[:, col["kw_rank"]] = np.log1p(np.where(kw > 0, kw, 1000)) if kw is not None else np.nan
    for enc in ("minilm", "use"):
        if enc in cand.cos:
            f[:, col[f"cos_{enc}"]] = cand.cos[enc]
            f[:, col[f"cos_{enc}_rel"]] = _rel(cand.cos[enc])
            r = cand.ranks.get(enc)
            if r is not None:
                f[:, col[f"rank_{enc}"]] = np.log1p(np.where(r > 0, r, 1000))
    f[:, col["rrf"]] = cand.rrf
    f[:, col["n_query_tokens"]] = len(toks)
    f[:, col["n_fixes"]] = len(q.fixes)
    f[:, col["log_price"]] = np.log1p(cat.prices[rows])
    f[:, col["log_popularity"]] = np.log1p(np.maximum(cat.popularity[rows], 0))


def _match_features(f: np.ndarray, q: ParsedQuery, rows: np.ndarray, cat: Catalog, bm_title: BM25Matrix) -> None:
    """How each candidate's title, text, brand and category match the (non-empty) query's tokens."""
    col, toks = COL, q.tokens
    nq = len(toks)
    idf = {t: float(bm_title.idf[bm_title.vocab[t]]) if t in bm_title.vocab else 0.0 for t in toks}
    idf_total = sum(idf.values()) or 1.0
    qset = set(toks)
    qbigrams = set(zip(toks, toks[1:], strict=False))
    nums = {t for t in toks if any(ch.isdigit() for ch in t)}
    qsizes = sizes(toks)
    qnorm = normalize(q.text)
    qtri = _trigrams(qnorm)
    first, last = toks[0], toks[-1]
    for i, r in enumerate(rows.tolist()):
        tt = cat.title_tokens[r]
        tset = set(tt)
        inter = qset & tset
        f[i, col["q_coverage"]] = len(inter) / nq
        f[i, col["q_coverage_text"]] = len(qset & set(cat.text_tokens[r])) / nq
        f[i, col["q_idf_coverage"]] = sum(idf[t] for t in inter) / idf_total
        f[i, col["title_coverage"]] = len(inter) / max(len(tset), 1)
        f[i, col["title_len"]] = len(tt)
        title = cat.titles[r].lower()
        f[i, col["exact_phrase"]] = float(qnorm in title)
        f[i, col["last_token"]] = float(last in tset)
        f[i, col["first_token"]] = float(first in tset)
        if qbigrams:
            f[i, col["bigram_frac"]] = len(qbigrams & set(zip(tt, tt[1:], strict=False))) / len(qbigrams)
        if nums:
            f[i, col["numeric_match"]] = len(nums & tset) / len(nums)
        if qsizes:  # "2x8" in "2 in. x 8 in. x 12 ft.", "16 gal" in "16 Gal."
            f[i, col["size_match"]] = len(qsizes & sizes(tt)) / len(qsizes)
        ttri = _trigrams(title)
        f[i, col["trigram_jaccard"]] = len(qtri & ttri) / max(len(qtri | ttri), 1)
        b = cat.brands[r]
        if b:
            f[i, col["brand_match"]] = float(b.lower() in qnorm)
        cg = cat.categories[r]
        if cg:
            f[i, col["category_match"]] = len(qset & _category_tokens(cg)) / nq
