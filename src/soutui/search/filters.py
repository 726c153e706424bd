"""Filters (category, brand, price, stock), facet counts and result ordering over the catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from soutui.data.schema import CATEGORY_SEP
from soutui.search.catalog import Catalog

Sort = Literal["relevance", "price_asc", "price_desc", "popularity"]
SORTS: tuple[str, ...] = ("relevance", "price_asc", "price_desc", "popularity")
PRICE_BUCKETS: tuple[float, ...] = (0, 10, 25, 50, 100, 250, 500, 1000, float("inf"))
FACET_TOP = 20


@dataclass(frozen=True)
class SearchFilters:
    """All set fields must hold. `category` matches the path or any sub-path ("Tools" ⊇ "Tools > Drills")."""

    category: str | None = None
    brand: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool | None = None

    def __post_init__(self) -> None:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) is above max_price ({self.max_price})")

    def active(self) -> bool:
        return any(
            v is not None for v in (self.category, self.brand, self.min_price, self.max_price, self.in_stock)
        )

    def mask(self, cat: Catalog) -> np.ndarray | None:
        """Boolean mask over catalogue rows, or None when no filter is set (fast path)."""
        if not self.active():
            return None
        m = np.ones(len(cat), bool)
        if self.category is not None:
            m &= _value_mask(cat, "categories", self.category.strip().lower())
        if self.brand is not None:
            m &= _value_mask(cat, "brands", self.brand.strip().lower())
        with np.errstate(invalid="ignore"):
            if self.min_price is not None:
                m &= cat.prices >= self.min_price
            if self.max_price is not None:
                m &= cat.prices <= self.max_price
        if self.in_stock is not None:
            m &= cat.in_stock == int(self.in_stock)
        return m


def _lower(cat: Catalog, column: str) -> np.ndarray:
    """Lower-cased fixed-width copy of a text column, computed once per catalogue (vectorised filters)."""
    cache: dict[str, np.ndarray] = cat.__dict__.setdefault("_lower_cache", {})
    if column not in cache:
        cache[column] = np.char.lower(np.asarray(getattr(cat, column), dtype=str))
    return cache[column]


MASK_CACHE = 1024  # per catalogue: category / brand masks are reused across requests


def _value_mask(cat: Catalog, column: str, value: str) -> np.ndarray:
    """Rows whose `column` equals `value` (categories: or lies under it), cached per catalogue (read-only)."""
    cache: dict[tuple[str, str], np.ndarray] = cat.__dict__.setdefault("_mask_cache", {})
    key = (column, value)
    hit = cache.get(key)
    if hit is None:
        col = _lower(cat, column)
        hit = col == value
        if column == "categories":
            hit |= np.char.startswith(col, value + CATEGORY_SEP.lower())
        hit.flags.writeable = False
        if len(cache) >= MASK_CACHE:
            cache.clear()
        cache[key] = hit
    return hit


def _bucket(p: float) -> str | None:
    if np.isnan(p):
        return None
    for lo, hi in zip(PRICE_BUCKETS, PRICE_BUCKETS[1:], strict=False):
        if lo <= p < hi:
            return f"{lo:g}+" if hi == float("inf") else f"{lo:g}-{hi:g}"
    return None


def _top(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_TOP])


@dataclass(frozen=True)
class _FacetCodes:
    """Per-catalogue integer codes for every facet, so counting a query's rows is one bincount each."""

    names: dict[str, list[str]]  # facet -> value per code
    codes: dict[str, np.ndarray]  # facet -> (N,) code per row, -1 = no value


def _codes_of(values: list[str | None]) -> tuple[list[str], np.ndarray]:
    names: dict[str, int] = {}
    codes = np.array([-1 if not v else names.setdefault(v, len(names)) for v in values], np.int64)
    return list(names), codes


def _facet_codes(cat: Catalog) -> _FacetCodes:
    cached = cat.__dict__.get("_facet_codes")
    if cached is None:
        stock = ["true" if s == 1 else "false" if s == 0 else None for s in cat.in_stock.tolist()]
        columns = {
            "category": [c.split(CATEGORY_SEP)[0] for c in cat.categories],
            "brand": list(cat.brands),
            "price": [_bucket(float(p)) for p in cat.prices],
            "in_stock": stock,
        }
        built = {k: _codes_of(v) for k, v in columns.items()}
        cached = _FacetCodes({k: n for k, (n, _) in built.items()}, {k: c for k, (_, c) in built.items()})
        cat.__dict__["_facet_codes"] = cached
    return cached


def facets(cat: Catalog, rows: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts over the matched rows: category (top level), brand, price bucket, stock."""
    fc = _facet_codes(cat)
    out: dict[str, dict[str, int]] = {}
    for key, codes in fc.codes.items():
        c = codes[rows]
        counts = np.bincount(c[c >= 0], minlength=len(fc.names[key]))
        nz = np.flatnonzero(counts)
        out[key] = {fc.names[key][i]: int(counts[i]) for i in nz.tolist()}
    out["category"], out["brand"] = _top(out["category"]), _top(out["brand"])
    order = {f"{lo:g}": i for i, lo in enumerate(PRICE_BUCKETS)}
    out["price"] = dict(
        sorted(out["price"].items(), key=lambda kv: order.get(kv[0].split("-")[0].rstrip("+"), 99))
    )
    return out


def sort_rows(cat: Catalog, rows: np.ndarray, sort: str) -> np.ndarray:
    """Reorder relevance-ranked rows by `sort`; ties keep relevance order, unknown prices go last."""
    if sort == "relevance":
        return rows
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; choose one of {SORTS}")
    if sort == "popularity":
        return rows[np.argsort(-cat.popularity[rows], kind="stable")]
    p = cat.prices[rows]
    key = np.where(np.isnan(p), np.inf, p if sort == "price_asc" else -p)
    return rows[np.argsort(key, kind="stable")]
