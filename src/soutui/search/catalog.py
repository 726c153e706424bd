"""The searchable catalogue: item columns as arrays, item texts, and their token cache.

Search needs random access to a few item fields for filters, facets, features and
hits; holding them as numpy arrays (not a DataFrame) keeps per-query overhead low.
The tokenised titles are computed once at build time and saved with the index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data.schema import CATEGORY_SEP
from soutui.features.text import analyze


def clean(text: object) -> str:
    """Collapse whitespace; missing values become ''."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return ""
    return " ".join(str(text).split())


def embed_text(title: str, brand: str, category: str) -> str:
    """What the semantic index embeds: title, plus brand and leaf category when they add words."""
    parts = [title]
    if brand and brand.lower() not in title.lower():
        parts.append(brand)
    leaf = category.split(CATEGORY_SEP)[-1].strip() if category else ""
    if leaf and leaf.lower() not in title.lower():
        parts.append(leaf)
    return " ".join(p for p in parts if p)


@dataclass
class Catalog:
    item_ids: np.ndarray  # (N,) object str
    titles: np.ndarray  # (N,) object str
    brands: np.ndarray  # (N,) object str, '' if unknown
    categories: np.ndarray  # (N,) object str (full path), '' if unknown
    descriptions: np.ndarray  # (N,) object str
    prices: np.ndarray  # (N,) float64, NaN if unknown
    in_stock: np.ndarray  # (N,) int8: 1 yes, 0 no, -1 unknown
    popularity: np.ndarray  # (N,) float64, 0 if unknown
    title_tokens: list[list[str]] = field(default_factory=list)
    text_tokens: list[list[str]] = field(default_factory=list)  # title + brand + category + description

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_items(cls, items: pd.DataFrame, popularity: np.ndarray | None = None) -> Catalog:
        if "item_id" not in items.columns or "title" not in items.columns:
            raise ValueError(
                "items table needs at least the columns 'item_id' and 'title' (see soutui.data.schema)"
            )
        n = len(items)
        if n == 0:
            raise ValueError("cannot build a search index over an empty catalogue")

        def col(name: str) -> list[str]:
            return [clean(v) for v in items[name]] if name in items.columns else [""] * n

        ids = col("item_id")
        if len(set(ids)) != n:
            raise ValueError("items.item_id has duplicates; deduplicate the catalogue before indexing")
        prices = (
            pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            if "price" in items
            else np.full(n, np.nan)
        )
        if "in_stock" in items.columns:
            stock = np.array(
                [
                    -1 if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else int(bool(v))
                    for v in items["in_stock"]
                ],
                np.int8,
            )
        else:
            stock = np.full(n, -1, np.int8)
        pop = np.zeros(n) if popularity is None else np.asarray(popularity, np.float64)
        if len(pop) != n:
            raise ValueError(f"popularity has {len(pop)} values but the catalogue has {n} items")
        cat = cls(
            np.array(ids, object),
            np.array(col("title"), object),
            np.array(col("brand"), object),
            np.array(col("category"), object),
            np.array(col("description"), object),
            prices,
            stock,
            pop,
        )
        cat.tokenize()
        return cat

    def tokenize(self) -> None:
        self.title_tokens = [analyze(t) for t in self.titles]
        self.text_tokens = [
            tt + analyze(f"{b} {c.replace(CATEGORY_SEP, ' ')} {d[:500]}") if (b or c or d) else list(tt)
            for tt, b, c, d in zip(
                self.title_tokens, self.brands, self.categories, self.descriptions, strict=True
            )
        ]

    def display_title(self, row: int) -> str:
        """The title; for an untitled item its brand and leaf category (never the bare id), else ''."""
        if self.titles[row]:
            return str(self.titles[row])
        leaf = self.categories[row].split(CATEGORY_SEP)[-1].strip() if self.categories[row] else ""
        return " ".join(p for p in (self.brands[row], leaf) if p)

    def embed_texts(self) -> list[str]:
        return [
            embed_text(t, b, c) for t, b, c in zip(self.titles, self.brands, self.categories, strict=True)
        ]

    def save(self, out: Path) -> None:
        df = pd.DataFrame(
            {
                "item_id": self.item_ids,
                "title": self.titles,
                "brand": self.brands,
                "category": self.categories,
                "description": self.descriptions,
                "price": self.prices,
                "in_stock": self.in_stock,
                "popularity": self.popularity,
            }
        )
        df.to_parquet(out / "catalog.parquet", index=False)
        with open(out / "tokens.json", "w") as fh:
            json.dump(
                {
                    "title": [" ".join(t) for t in self.title_tokens],
                    "text": [" ".join(t) for t in self.text_tokens],
                },
                fh,
            )

    @classmethod
    def load(cls, out: Path) -> Catalog:
        df = pd.read_parquet(out / "catalog.parquet")
        cat = cls(
            df["item_id"].to_numpy(object),
            df["title"].to_numpy(object),
            df["brand"].to_numpy(object),
            df["category"].to_numpy(object),
            df["description"].to_numpy(object),
            df["price"].to_numpy(np.float64),
            df["in_stock"].to_numpy(np.int8),
            df["popularity"].to_numpy(np.float64),
        )
        with open(out / "tokens.json") as fh:
            tok = json.load(fh)
        cat.title_tokens = [s.split() for s in tok["title"]]
        cat.text_tokens = [s.split() for s in tok["text"]]
        return cat
