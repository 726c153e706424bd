"""SearchEngine: build / load / search over one catalogue — the interface serving calls.

One query goes: parse (normalise, spell-correct, tokenise) -> retrieve (title-boosted
BM25 top-N over the filter mask, faiss top-N per encoder; exact scans when filters leave
few items) -> rank
(bm25 | dense | hybrid RRF | ltr LightGBM) -> personalise (optional) -> sort ->
hits with reasons, plus facet counts over everything that matched.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from soutui.config import MissingFileError, from_dict, to_dict
from soutui.features.embeddings import build_threads, calibration_words, embed_texts, encode_use
from soutui.features.onnx_encoder import PackagedEncoder, encode_minilm_onnx, encode_query
from soutui.models.attribution import Attribution
from soutui.search import features as feats
from soutui.search.catalog import Catalog
from soutui.search.filters import SORTS, SearchFilters, facets, sort_rows
from soutui.search.fusion import rrf
from soutui.search.keyword import KeywordScorer
from soutui.search.ltr import LTRRanker, feature_label
from soutui.search.personalize import blend, personal_signal
from soutui.search.query import ParsedQuery, parse_query
from soutui.search.spelling import SpellCorrector
from soutui.search.vector import VectorIndex, calibrate_min_similarity

__all__ = ["SearchConfig", "SearchEngine", "SearchFilters", "SearchHit"]

Method = Literal["ltr", "hybrid", "bm25", "dense"]
METHODS: tuple[str, ...] = ("ltr", "hybrid", "bm25", "dense")
FORMAT_VERSION = 2  # 2: sizes and units tokenised in one spelling, the size_match feature
QUERY_ENCODER_DIR = "query_encoder"  # MiniLM query graph + tokenizer, so serving needs no torch


@dataclass
class SearchConfig:
    # MiniLM answers English queries, the multilingual USE answers Chinese ones (routed by script)
    encoders: list[str] = field(default_factory=lambda: ["minilm", "use"])
    quantized_query_encoder: bool = True  # int8 ONNX MiniLM for queries: ~5x faster, HD ltr NDCG@10 -0.001
    keyword_candidates: int = 100
    dense_candidates: int = 50
    rrf_k: int = 60
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 96
    spelling: bool = True
    exact_filter_limit: int = (
        20_000  # filtered subsets are never scanned exactly above this (see search_filtered)
    )
    personal_weight: float = 1.0
    personal_depth: int = 100
    sort_depth: int = 100
    embed_cache_dir: str | None = None
    # dense hits below a per-encoder cosine calibrated at build time are dropped: an unrelated
    # query expects about this many items above it (see search.vector.calibrate_min_similarity)
    dense_false_hits: float = 1.0

    def __post_init__(self) -> None:
        bad = [e for e in self.encoders if e not in ("minilm", "use")]
        if bad or not self.encoders:
            raise ValueError(f"encoders must be a non-empty subset of ['minilm', 'use'], got {self.encoders}")


@dataclass
class SearchHit:
    item_id: str
    title: str
    score: float
    price: float | None
    brand: str | None
    category: str | None
    in_stock: bool | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Ranked:
    """Internal result of ranking one query: rows best first, their scores, and all matched rows."""

    rows: np.ndarray
    scores: np.ndarray
    matched: np.ndarray
    query: ParsedQuery
    cand: feats.Candidates | None = None


def _embed_unique(
    texts: list[str], encoder: str, cache_dir: str | None, own: PackagedEncoder | None = None
) -> np.ndarray:
    """Embed the sorted unique texts (cache key independent of row order), map back to rows.

    An item with no text gets a zero vector (cosine 0 to every query), so it is never a
    dense hit: the embedding of an empty string sits close to many unrelated queries.
    `own` is the index's own (fine-tuned) fp32 graph: its vectors live in the index, not the cache.
    """
    uniq = sorted(set(texts) - {""})
    if own is None:
        vecs = embed_texts(uniq, encoder=encoder, cache_dir=cache_dir)
    else:
        batches = range(0, len(uniq), 256)
        vecs = np.concatenate(
            [encode_minilm_onnx(uniq[s : s + 256], packaged=own, threads=build_threads()) for s in tqdm(batches, desc="embed (fine-tuned minilm)", unit="batch")]
            or [np.zeros((0, 384), np.float32)]
        )  # fmt: skip
    pos = {t: i for i, t in enumerate(uniq)}
    out = np.zeros((len(texts), vecs.shape[1]), np.float32)
    rows = [i for i, t in enumerate(texts) if t]
    out[rows] = vecs[[pos[texts[i]] for i in rows]]
    return out


def _encode_queries(
    texts: list[str], encoder: str, config: SearchConfig, packaged: PackagedEncoder | None
) -> np.ndarray:
    """Batch-embed query texts with the same graph serving uses for single queries."""
    if encoder == "minilm" and (config.quantized_query_encoder or packaged is not None):
        return encode_minilm_onnx(texts, quantized=config.quantized_query_encoder, packaged=packaged)
    return embed_texts(texts, encoder=encoder, cache_dir=config.embed_cache_dir, progress=False)


def _query_encoder(
    name: str, quantized: bool, packaged: PackagedEncoder | None
) -> Callable[[str], np.ndarray]:
    if name == "use":
        return lambda q: encode_use([q])[0]
    return lambda q: encode_query(q, quantized=quantized, packaged=packaged)


class SearchEngine:
    def __init__(
        self,
        out_dir: Path,
        config: SearchConfig,
        catalog: Catalog,
        vectors: dict[str, VectorIndex],
        ranker: LTRRanker | None,
        min_similarity: dict[str, float] | None = None,
        default_method: str = "ltr",
    ) -> None:
        if default_method not in METHODS:
            raise ValueError(f"unknown search method {default_method!r}; choose one of {METHODS}")
        self.out_dir = out_dir
        # the method used when a caller names none: chosen on validation at build time
        # (`evaluation.choose_method`), else ltr (which ranks like hybrid without a ranker)
        self.default_method = default_method
        self.config = config
        self.catalog = catalog
        self.vectors = vectors
        self.ranker = ranker
        self.min_similarity = {e: (min_similarity or {}).get(e, -1.0) for e in vectors}
        self.keyword = KeywordScorer(catalog.title_tokens, catalog.text_tokens)
        self.bm_title, self.bm_text = self.keyword.title, self.keyword.text  # per-field BM25 for LTR features
        self.speller = (
            SpellCorrector(list(catalog.titles) + list(catalog.brands)) if config.spelling else None
        )
        self.row_of = {iid: i for i, iid in enumerate(catalog.item_ids.tolist())}
        self._packaged = (
            PackagedEncoder.find(out_dir / QUERY_ENCODER_DIR, config.quantized_query_encoder)
            if "minilm" in vectors
            else None
        )
        self._encoders = {
            e: lru_cache(maxsize=2048)(_query_encoder(e, config.quantized_query_encoder, self._packaged))
            for e in vectors
        }
        self._primed: dict[str, dict[str, np.ndarray]] = {e: {} for e in vectors}

    # ------------------------------------------------------------------ build / load
    @classmethod
    def build(
        cls,
        items_df: pd.DataFrame,
        out_dir: str | Path,
        config: SearchConfig | None = None,
        popularity: np.ndarray | None = None,
        own_encoder: Path | None = None,
        fine_tune: dict[str, Any] | None = None,
    ) -> SearchEngine:
        """Index `items_df` (schema `items` table) into `out_dir`; embeddings come from the disk cache.

        `own_encoder` is a directory with a fine-tuned MiniLM (`search.finetune.ENCODER_FILES`):
        it is copied into the index and embeds the catalogue (fp32) and every query (the
        configured graph), in place of the stock model; `fine_tune` is its record for the manifest.
        """
        config = config or SearchConfig()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        catalog = Catalog.from_items(items_df, popularity)
        texts = catalog.embed_texts()
        qdir, own = out / QUERY_ENCODER_DIR, None
        if own_encoder is not None:
            if "minilm" not in config.encoders:
                raise ValueError("a fine-tuned MiniLM needs 'minilm' among the encoders")
            shutil.rmtree(qdir, ignore_errors=True)
            shutil.copytree(own_encoder, qdir)
            packaged = PackagedEncoder.find(qdir, config.quantized_query_encoder)
            own = PackagedEncoder.find(qdir, quantized=False)
            if packaged is None or own is None:
                raise MissingFileError(f"{own_encoder} lacks the fine-tuned graphs (minilm.onnx, minilm.int8.onnx) or tokenizer.json")
        else:
            packaged = PackagedEncoder.save(qdir, config.quantized_query_encoder) if "minilm" in config.encoders else None
        vectors, floor = {}, {}
        for enc in config.encoders:
            vecs = _embed_unique(texts, enc, config.embed_cache_dir, own if enc == "minilm" else None)
            vectors[enc] = VectorIndex.build(
                vecs, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search
            )
            words = _encode_queries(calibration_words(enc), enc, config, packaged)
            hittable = vecs[vecs.any(axis=1)]  # untitled items (zero vectors) can never be hits
            floor[enc] = calibrate_min_similarity(hittable, words, config.dense_false_hits)
        engine = cls(out, config, catalog, vectors, None, floor)
        engine.save(build_seconds=time.time() - t0, fine_tune=fine_tune)  # None clears an earlier build's
        return engine

    def save(self, **extra: Any) -> None:
        out = self.out_dir
        self.catalog.save(out)
        for enc, vi in self.vectors.items():
            vi.save(out, enc)
        if self.ranker is not None:
            self.ranker.save(out / "ltr.txt")
        manifest = {
            "format": FORMAT_VERSION,
            "n_items": len(self.catalog),
            "config": to_dict(self.config),
            "encoders": sorted(self.vectors),
            "ltr": self.ranker is not None,
            "search_method": self.default_method,
            "min_similarity": self.min_similarity,
            **extra,
        }
        prev = out / "manifest.json"
        if prev.exists():
            old = json.loads(prev.read_text())
            manifest = {**{k: v for k, v in old.items() if k not in manifest}, **manifest}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))

    def warm_up(self) -> None:
        """Load every query encoder (USE takes ~2 s on first use) with an English and a Chinese query."""
        for text in ("warm up", "热门"):
            q = self.parse(text)
            for enc in self.vectors:
                self.embed_query(q, enc)
            self.search(text, k=1)
        self.clear_query_cache()

    def clear_query_cache(self) -> None:
        for f in self._encoders.values():
            f.cache_clear()  # type: ignore[attr-defined]

    @classmethod
    def load(cls, out_dir: str | Path, **overrides: Any) -> SearchEngine:
        """Load a built index; `overrides` replace query-time config fields (e.g. quantized_query_encoder)."""
        out = Path(out_dir)
        path = out / "manifest.json"
        if not path.exists():
            raise MissingFileError(
                f"{out} is not a search index (no manifest.json); build one with `soutui index build`"
            )
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{out}: index format {manifest.get('format')} != {FORMAT_VERSION}; rebuild it")
        config = from_dict(SearchConfig, {**manifest["config"], **overrides})
        vectors = {e: VectorIndex.load(out, e, config.hnsw_ef_search) for e in manifest["encoders"]}
        ranker = LTRRanker.load(out / "ltr.txt") if (out / "ltr.txt").exists() else None
        floor = manifest.get("min_similarity")  # absent in indexes built before calibration: no floor
        method = manifest.get("search_method", "ltr")  # indexes built before the choice: ltr
        engine = cls(out, config, Catalog.load(out), vectors, ranker, floor, method)
        if manifest.get("fine_tune") and "minilm" in vectors and engine._packaged is None:
            # never fall back to the stock model: its queries would not match the fine-tuned catalogue
            raise MissingFileError(f"{out}/{QUERY_ENCODER_DIR} lacks the index's fine-tuned query encoder; rebuild the index")
        return engine

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.out_dir / "manifest.json").read_text()))

    # ------------------------------------------------------------------ retrieval
    def parse(self, query: str) -> ParsedQuery:
        return parse_query(query, self.speller)

    def embed_query(self, q: ParsedQuery, encoder: str) -> np.ndarray:
        text = q.text or q.raw
        hit = self._primed[encoder].get(text)
        return hit if hit is not None else self._encoders[encoder](text)

    def prime_queries(self, queries: list[str]) -> None:
        """Batch-embed many queries at once (disk-cached) — for evaluation and training, not serving."""
        texts = sorted({(p.text or p.raw) for p in map(self.parse, queries)})
        for enc in self.vectors:
            vecs = _encode_queries(texts, enc, self.config, self._packaged)
            self._primed[enc].update(zip(texts, vecs, strict=True))

    def primary_encoder(self, q: ParsedQuery) -> str:
        """USE for Chinese queries (MiniLM is English-only), MiniLM otherwise, else whatever exists."""
        if q.cjk and "use" in self.vectors:
            return "use"
        return "minilm" if "minilm" in self.vectors else next(iter(self.vectors))

    def _keyword(self, q: ParsedQuery, mask: np.ndarray | None, n: int) -> np.ndarray:
        return self.keyword.top(q.tokens, n, mask)[0]

    def _dense(
        self, q: ParsedQuery, enc: str, mask: np.ndarray | None, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (rows, cosines) of one encoder that pass `mask` and the encoder's calibrated floor."""
        vi, qv = self.vectors[enc], self.embed_query(q, enc)
        if mask is None:
            rows, s = vi.search(qv, n)
        else:
            rows, s = vi.search_filtered(qv, n, mask, self.config.exact_filter_limit)
        keep = s >= self.min_similarity[enc]
        return rows[keep], s[keep]

    def candidates(
        self,
        q: ParsedQuery,
        mask: np.ndarray | None,
        dense_encoders: list[str] | None = None,
        cosines: bool = True,
    ) -> feats.Candidates:
        """Union of keyword top-N and each encoder's top-N, with ranks, RRF and (for LTR) cosines."""
        lists = {"keyword": self._keyword(q, mask, self.config.keyword_candidates)}
        encs = list(self.vectors) if dense_encoders is None else dense_encoders
        for enc in encs:
            lists[enc] = self._dense(q, enc, mask, self.config.dense_candidates)[0]
        fused_rows, fused = rrf(list(lists.values()), self.config.rrf_k)
        ranks = {}
        by_row = np.argsort(fused_rows)  # position in fused_rows of each row, by searchsorted
        for name, rows in lists.items():
            rk = np.zeros(len(fused_rows), np.int64)
            rk[by_row[np.searchsorted(fused_rows, rows, sorter=by_row)]] = np.arange(1, len(rows) + 1)
            ranks[name] = rk
        cos = (
            {enc: self.vectors[enc].similarity(self.embed_query(q, enc), fused_rows) for enc in encs}
            if cosines
            else {}
        )
        return feats.Candidates(fused_rows, ranks, cos, fused)

    # ------------------------------------------------------------------ ranking
    def rank(
        self, query: str | ParsedQuery, method: str | None = None, filters: SearchFilters | None = None
    ) -> Ranked:
        """Relevance ranking of everything retrieved for `query` (no personalisation, no sort);
        `method` None is the index's default (chosen on validation when it had judgments)."""
        method = method or self.default_method
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; choose one of {METHODS}")
        q = query if isinstance(query, ParsedQuery) else self.parse(query)
        mask = (filters or SearchFilters()).mask(self.catalog)
        if method == "bm25":
            n = max(self.config.keyword_candidates, self.config.sort_depth)
            rows, s = self.keyword.top(q.tokens, n, mask)
            return Ranked(rows, s.astype(np.float64), rows, q)
        if method == "dense":
            rows, s = self._dense(
                q, self.primary_encoder(q), mask, max(self.config.dense_candidates, self.config.sort_depth)
            )
            return Ranked(rows, s.astype(np.float64), rows, q)
        if method == "hybrid" or self.ranker is None:
            cand = self.candidates(q, mask, [self.primary_encoder(q)], cosines=False)  # RRF needs no cosines
            return Ranked(cand.rows, cand.rrf, self._matched(cand), q, cand)
        cand = self.candidates(q, mask)
        if len(cand.rows) == 0:
            return Ranked(cand.rows, cand.rrf, cand.rows, q, cand)
        scores = self.ranker.predict(feats.compute(q, cand, self.catalog, self.bm_title, self.bm_text))
        order = np.lexsort((cand.rows, -scores))
        return Ranked(cand.rows[order], scores[order], self._matched(cand), q, cand)

    @staticmethod
    def _matched(cand: feats.Candidates) -> np.ndarray:
        """What facets count and sorts reorder: keyword matches when there are any, else all retrieved."""
        kw = cand.ranks["keyword"] > 0
        return cand.rows[kw] if kw.any() else cand.rows

    def history_rows(self, user_history: list[str] | None) -> np.ndarray:
        """Catalogue rows of the user's items (unknown ids are ignored: items may have left the catalogue)."""
        if not user_history:
            return np.zeros(0, np.int64)
        return np.array([self.row_of[i] for i in map(str, user_history) if i in self.row_of], np.int64)

    def search(
        self,
        query: str,
        k: int = 10,
        filters: SearchFilters | None = None,
        sort: str = "relevance",
        method: str | None = None,
        user_history: list[str] | None = None,
        user_scores: np.ndarray | None = None,
    ) -> tuple[list[SearchHit], dict[str, dict[str, int]]]:
        """Top-k hits (with reasons) and facet counts over all matched products."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}; choose one of {SORTS}")
        ranked = self.rank(query, method, filters)
        rows, scores = ranked.rows, ranked.scores
        personal: dict[int, str] = {}
        hist = self.history_rows(user_history)
        if (len(hist) or user_scores is not None) and len(rows):
            d = min(len(rows), self.config.personal_depth)
            head, head_s = rows[:d], scores[:d]
            vecs = (
                self.vectors["minilm"].vectors
                if "minilm" in self.vectors
                else next(iter(self.vectors.values())).vectors
            )
            p, reasons = personal_signal(self.catalog, vecs, hist, head, user_scores)
            mixed = blend(head_s, p, self.config.personal_weight)
            order = np.argsort(-mixed, kind="stable")
            rows, scores = (
                np.concatenate([head[order], rows[d:]]),
                np.concatenate([mixed[order], scores[d:] - 1e6]),
            )
            personal = {int(head[i]): r for i, r in enumerate(reasons) if r}
        if sort != "relevance":
            # sort only what really matched (keyword hits), best `sort_depth` of them by relevance
            matched = set(ranked.matched.tolist())
            pool = np.array([r for r in rows.tolist() if r in matched], np.int64)
            top = sort_rows(self.catalog, pool[: max(k, self.config.sort_depth)], sort)
            score_of = dict(zip(rows.tolist(), scores.tolist(), strict=True))
            rows, scores = top, np.array([score_of[r] for r in top.tolist()])
        hits = [
            self._hit(int(r), float(s), ranked, personal.get(int(r)))
            for r, s in zip(rows[:k], scores[:k], strict=True)
        ]
        return hits, facets(self.catalog, ranked.matched)

    def explain(
        self, query: str, item_ids: list[str], method: str | None = None, filters: SearchFilters | None = None
    ) -> list[list[Attribution]]:
        """Per-feature shares of each item's relevance score for `query`, strongest first:
        LightGBM TreeSHAP (`pred_contrib`) for the learned ranker, each retriever's exact
        1 / (k + rank) term for hybrid RRF, the single retrieval score for bm25 / dense. An
        item the query did not retrieve gets an empty list."""
        method = method or self.default_method
        q = self.parse(query)
        mask = (filters or SearchFilters()).mask(self.catalog)
        rows = [self.row_of.get(str(i), -1) for i in item_ids]
        if method in ("bm25", "dense"):
            ranked = self.rank(q, method, filters)
            score = dict(zip(ranked.rows.tolist(), ranked.scores.tolist(), strict=True))
            name = "keyword match (BM25)" if method == "bm25" else "meaning match"
            return [[Attribution("feature", name, score[r])] if r in score else [] for r in rows]
        if self.ranker is not None and method == "ltr":
            cand = self.candidates(q, mask)
            x = feats.compute(q, cand, self.catalog, self.bm_title, self.bm_text)
            table = self.ranker.contributions(x)[:, :-1]  # (C, F); the last column is the expected score
            names = [feature_label(f) for f in feats.FEATURES]
        else:
            cand = self.candidates(q, mask, [self.primary_encoder(q)], cosines=False)
            names = [("keyword search rank" if n == "keyword" else f"semantic search rank ({n})") for n in cand.ranks]
            rk = np.stack(list(cand.ranks.values()), 1)  # (C, retrievers)
            table = np.where(rk > 0, 1.0 / (self.config.rrf_k + np.maximum(rk, 1)), 0.0)
        at = {int(r): p for p, r in enumerate(cand.rows.tolist())}
        out: list[list[Attribution]] = []
        for r in rows:
            p = at.get(r)
            terms = [] if p is None else [Attribution("feature", n, float(w)) for n, w in zip(names, table[p], strict=True) if w]
            out.append(sorted(terms, key=lambda a: -abs(a.weight)))
        return out

    # ------------------------------------------------------------------ presentation
    def reason(self, row: int, q: ParsedQuery) -> str:
        title_tokens = set(self.catalog.title_tokens[row])
        matched = [w for t, w in q.display.items() if t in title_tokens]
        if matched:
            words = ", ".join(f"'{w}'" for w in matched[:4])
            text = f"matches {words} in title"
        else:
            other = set(self.catalog.text_tokens[row])
            matched = [w for t, w in q.display.items() if t in other]
            text = (
                f"matches {', '.join(repr(w) for w in matched[:4])} in brand/category/description"
                if matched
                else f"semantically similar to '{q.text or q.raw}'"
            )
        if q.fixes:
            text += " (searched for " + ", ".join(f"'{c}' instead of '{t}'" for t, c in q.fixes.items()) + ")"
        return text

    def _hit(self, row: int, score: float, ranked: Ranked, personal: str | None) -> SearchHit:
        c = self.catalog
        price = float(c.prices[row])
        stock = int(c.in_stock[row])
        reason = self.reason(row, ranked.query)
        return SearchHit(
            item_id=str(c.item_ids[row]),
            title=c.display_title(row),
            score=round(score, 6),
            price=None if np.isnan(price) else price,
            brand=c.brands[row] or None,
            category=c.categories[row] or None,
            in_stock=None if stock < 0 else bool(stock),
            reason=f"{reason}; {personal}" if personal else reason,
        )
