"""Per-item content aligned with a model's item vocabulary: the one typed object every model's `fit` accepts.

Row i describes item index i (`SequenceData.item_ids[i]`). Every field is optional: a
catalogue without brands has `brand=None`, and a model that does not use a field
ignores it. Text embeddings are computed by the caller (they are cached and need an
encoder), so building content from an items table stays cheap and torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = -1  # category / brand code of an item whose value is unknown


@dataclass(frozen=True)
class ItemContent:
    """What is known about each item besides its interactions.

    text: (I, D) float32 title embeddings. attributes: per item, a list of attribute ids
    (any ints; models re-index them). category / brand: (I,) int codes, UNKNOWN (-1) when
    unknown. price: (I,) float64, NaN when unknown.
    """

    text: np.ndarray | None = None
    attributes: list[list[int]] | None = None
    category: np.ndarray | None = None
    brand: np.ndarray | None = None
    price: np.ndarray | None = None

    def check(self, n_items: int) -> ItemContent:
        """Raise a clear error when a field does not have one row per catalogue item."""
        for name in ("text", "attributes", "category", "brand", "price"):
            value = getattr(self, name)
            if value is not None and len(value) != n_items:
                raise ValueError(
                    f"item content: {name} has {len(value)} rows but the catalogue has {n_items} items"
                )
        return self

    @classmethod
    def from_items(
        cls, items: pd.DataFrame | None, item_ids: Sequence[Any] | np.ndarray, text: np.ndarray | None = None
    ) -> ItemContent:
        """Content from a schema `items` table, re-aligned to `item_ids` (unknown items: all unknown)."""
        text = None if text is None else np.asarray(text, dtype=np.float32)
        if items is None or not len(items):
            return cls(text=text).check(len(item_ids))
        df = aligned(items, item_ids)
        return cls(
            text=text,
            attributes=attributes_from_items(items, np.asarray(item_ids, dtype=object)),
            category=_codes(df.get("category")),
            brand=_codes(df.get("brand")),
            price=_prices(df.get("price")),
        ).check(len(item_ids))


def aligned(items: pd.DataFrame, item_ids: Sequence[Any] | np.ndarray) -> pd.DataFrame:
    """The items table re-indexed to the model's item order (unknown items: all null)."""
    df = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    return df.set_index("item_id").reindex([str(x) for x in item_ids])


def _codes(col: pd.Series | None) -> np.ndarray | None:
    """Dense int codes of a string column (in order of first appearance), UNKNOWN for missing."""
    if col is None:
        return None
    vocab: dict[str, int] = {}
    out = np.full(len(col), UNKNOWN, dtype=np.int64)
    for i, v in enumerate(col):
        if isinstance(v, str) and v:
            out[i] = vocab.setdefault(v, len(vocab))
    return out if vocab else None


def _prices(col: pd.Series | None) -> np.ndarray | None:
    if col is None:
        return None
    price = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, copy=True)
    price[~(price >= 0)] = np.nan  # negative or missing: unknown
    return price if np.isfinite(price).any() else None


def attributes_from_items(items: pd.DataFrame, item_ids: np.ndarray) -> list[list[int]] | None:
    """Attribute ids per catalogue item from the items table's JSON `attributes`.

    Uses {"attribute_ids": [...]} when present, else hashes category / brand strings
    into (negative) ids; None when the catalogue has no attribute information at all.
    """
    if items is None or not len(items):
        return None
    by_id = items.drop_duplicates("item_id").set_index(items["item_id"].drop_duplicates().astype(str))
    out: list[list[int]] = []
    found = False
    names: dict[str, int] = {}
    for it in item_ids:
        ids: list[int] = []
        if str(it) in by_id.index:
            row = by_id.loc[str(it)]
            raw = row.get("attributes")
            if isinstance(raw, str) and raw:
                try:
                    ids = [int(a) for a in json.loads(raw).get("attribute_ids", [])]
                except (ValueError, AttributeError, TypeError):
                    ids = []
            if not ids:
                for col in ("category", "brand"):
                    v = row.get(col)
                    if isinstance(v, str) and v:
                        ids.append(-names.setdefault(f"{col}:{v}", len(names) + 1))
        found = found or bool(ids)
        out.append(ids)
    return out if found else None


def titles_for(items: pd.DataFrame | None, item_ids: Sequence[Any] | np.ndarray) -> list[str] | None:
    """Title per catalogue item ('' when unknown); None when the catalogue has no titles."""
    if items is None or not len(items) or "title" not in items:
        return None
    m = dict(zip(items["item_id"].astype(str), items["title"].fillna("").astype(str), strict=True))
    titles = [m.get(str(i), "") for i in item_ids]
    return titles if any(titles) else None
