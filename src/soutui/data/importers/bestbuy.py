"""Importer for the Best Buy product catalogue (items only: UPC, name, manufacturer, descriptions).

The file escapes quotes with a backslash (`70\"`) instead of doubling them, which a
default CSV reader splits into extra columns; it is read with that dialect. A UPC
listed twice keeps its most complete row (the others are quarantined); placeholder
manufacturers ("Unknown") become null and HTML entities are decoded, counted as fixed.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_items, with_row_numbers
from soutui.data.importers.base import ImportResult, dataset_root, read_delimited

FILE = "products.csv"
COLUMNS = ["upc", "name", "manufacturer", "short_description", "long_description"]
PLACEHOLDER_BRANDS = {"unknown", "n/a", "na", "none", "-"}


def _tidy(s: pd.Series, report: ImportReport, what: str) -> pd.Series:
    """Decode HTML entities and collapse runs of whitespace."""
    s = s.astype("string")
    has_entity = s.str.contains(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", regex=True, na=False)
    report.add_fixed(f"html_entities_{what}", int(has_entity.sum()))
    decoded = s.where(~has_entity, s[has_entity].map(html.unescape))
    out = decoded.str.replace(r"\s+", " ", regex=True).str.strip()
    return out.where(out != "")


def build(data_dir: Path, name: str = "bestbuy-catalog") -> ImportResult:
    started = time.perf_counter()
    root = dataset_root(data_dir, "bestbuy-catalog")
    report = ImportReport(dataset=name, source=str(root))
    q = Quarantine()
    raw = read_delimited(
        root / FILE, COLUMNS, "bestbuy-catalog", escapechar="\\", doublequote=False, skipinitialspace=True
    )
    raw = with_row_numbers(raw)
    report.rows_read["items"] = len(raw)
    brand = raw["manufacturer"].astype("string").str.strip()
    placeholder = brand.str.lower().isin(PLACEHOLDER_BRANDS).fillna(False)
    report.add_fixed("placeholder_brand", int(placeholder.sum()))
    items = pd.DataFrame(
        {
            "item_id": raw["upc"].str.strip(),
            "title": _tidy(raw["name"], report, "title"),
            "brand": brand.where(~placeholder),
            "description": _tidy(
                raw["long_description"].fillna(raw["short_description"]), report, "description"
            ),
            "attributes": [None] * len(raw),
            "_row": raw["_row"],
        },
        index=raw.index,
    )
    short = _tidy(raw["short_description"], report, "short_description")
    items["attributes"] = [
        None if pd.isna(s) else json.dumps({"short_description": s}, ensure_ascii=False) for s in short
    ]
    # most complete row first, so a repeated UPC keeps its best description
    completeness = items[["title", "brand", "description"]].notna().sum(axis=1) + short.notna()
    items = items.assign(_c=-completeness).sort_values(["_c", "_row"], kind="stable").drop(columns="_c")
    items = clean_items(items, report, q, source=raw).sort_values("_row", kind="stable")
    report.seconds = time.perf_counter() - started
    report.notes.append("catalogue only (no events); description = long description, else short")
    return ImportResult(
        name=name, tables={"items": items}, quarantine=q.frame(), report=report, meta={"kind": "catalog"}
    )
