"""Semantic retrieval: item embeddings with a faiss HNSW index beside the exact (flat) reference.

The full embedding matrix is kept too: exact cosine for any candidate is a row
lookup, which LTR features, filtered search over small subsets, and
personalisation all need. HNSW answers the unfiltered top-k in well under a ms.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class VectorIndex:
    def __init__(self, vectors: np.ndarray, ann: faiss.Index | None, ef_search: int = 96) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D) L2-normalised
        self.ann = ann
        self.ef_search = ef_search
        if ann is not None:
            faiss.ParameterSpace().set_index_parameter(ann, "efSearch", ef_search)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
        min_ann: int = 2000,
    ) -> VectorIndex:
        """HNSW (inner product) when the catalogue is big enough to need it; exact below `min_ann`."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ann = None
        if len(vectors) >= min_ann:
            ann = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            ann.hnsw.efConstruction = ef_construction
            ann.add(vectors)
        return cls(vectors, ann, ef_search)

    def save(self, out: Path, name: str) -> None:
        np.save(out / f"{name}.npy", self.vectors)
        if self.ann is not None:
            faiss.write_index(self.ann, str(out / f"{name}.hnsw"))

    @classmethod
    def load(cls, out: Path, name: str, ef_search: int = 96) -> VectorIndex:
        path = out / f"{name}.hnsw"
        ann = faiss.read_index(str(path)) if path.exists() else None
        return cls(np.load(out / f"{name}.npy"), ann, ef_search)

    def search_exact(
        self, q: np.ndarray, k: int, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-k by inner product, optionally restricted to `rows` (the reference)."""
        vecs = self.vectors if rows is None else self.vectors[rows]
        s = vecs @ q.astype(np.float32)
        k = min(k, len(s))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return (top if rows is None else rows[top]).astype(np.int64), s[top]

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k (HNSW) over the whole catalogue."""
        if self.ann is None:
            return self.search_exact(q, k)
        scores, rows = self.ann.search(q.reshape(1, -1).astype(np.float32), k)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def search_filtered(
        self, q: np.ndarray, k: int, mask: np.ndarray, exact_limit: int = 20_000
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among rows where `mask` holds: an exact scan or HNSW restricted to the mask, the cheaper one.

        A scan costs ~1.3 us per passing row (gather + dot, 512-d); the restricted HNSW
        widens its beam as the filter narrows (efSearch x N / passing rows, at most 1024)
        to keep recall, at ~7.5 us per beam slot. The two costs cross at about
        sqrt(6 x efSearch x N) passing rows (5,600 on Home Depot's 54,667 items), so
        smaller subsets (and any above `exact_limit` never) are scanned.
        """
        n_pass = int(mask.sum())
        crossover = int(np.sqrt(6.0 * self.ef_search * len(mask)))
        if self.ann is None or n_pass <= min(exact_limit, crossover):
            return self.search_exact(q, k, np.flatnonzero(mask))
        ef = int(min(1024, max(self.ef_search, self.ef_search * len(mask) / n_pass, k)))
        bits = np.packbits(mask, bitorder="little")  # must outlive the search call
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)  # type: ignore[attr-defined]  # stubs lag
        scores, rows = self.ann.search(q.reshape(1, -1).astype(np.float32), k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def similarity(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.vectors[rows] @ q.astype(np.float32)


def calibrate_min_similarity(
    item_vectors: np.ndarray, query_vectors: np.ndarray, false_hits: float = 1.0, max_items: int = 20_000
) -> float:
    """Cosine below which a dense hit is indistinguishable from chance, for this encoder and catalogue.

    `query_vectors` embed random dictionary words (queries unrelated to the catalogue).
    The threshold is the (1 - false_hits / N) quantile of their similarities to the
    N catalogue items, so an unrelated query expects about `false_hits` items above it.
    Items are subsampled (seed 0) above `max_items`; the quantile is taken at the full
    catalogue's N, since that is where a query will search.
    """
    n = len(item_vectors)
    if n == 0 or len(query_vectors) == 0:
        return -1.0
    items = item_vectors
    if n > max_items:
        items = item_vectors[np.random.default_rng(0).choice(n, max_items, replace=False)]
    sims = (query_vectors.astype(np.float32) @ items.T).ravel()  # (Q * N',)
    q = min(max(1.0 - false_hits / n, 0.0), 1.0)
    return float(np.quantile(sims, q))
