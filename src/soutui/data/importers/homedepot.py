"""Importer for Kaggle "Home Depot Product Search Relevance" (graded query-product judgements).

Each judged (query, product) pair becomes a `search` event carrying the query text,
the product and the human relevance label (mean of >= 3 ratings on 1..3). There are
no users or sessions in this data, so events are anonymous.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items, with_row_numbers
from soutui.data.importers.base import ImportResult, dataset_root, read_delimited

FILE = "train.csv"


def build(data_dir: Path, name: str = "homedepot-search") -> ImportResult:
    started = time.perf_counter()
    root = dataset_root(data_dir, "homedepot-search")
    report = ImportReport(dataset=name, source=str(root))
    q = Quarantine()
    raw = read_delimited(
        root / FILE,
        ["id", "product_uid", "product_title", "search_term", "relevance"],
        "homedepot-search",
        encoding="utf-8",
    )
    raw = with_row_numbers(raw)
    report.rows_read["events"] = len(raw)
    rel = pd.to_numeric(raw["relevance"], errors="coerce")
    bad_rel = rel.isna() | (rel < 1) | (rel > 3)
    report.add_quarantined("bad_relevance", q.add("events", raw, bad_rel.to_numpy(), "bad_relevance"))
    original = raw["search_term"].astype("string")
    query = original.str.strip().str.replace(r"\s+", " ", regex=True)
    report.add_fixed("query_whitespace", int((query != original).fillna(False).sum()))
    no_query = (query.isna() | (query == "")).to_numpy()
    report.add_quarantined(
        "missing_query", q.add("events", raw, no_query & ~bad_rel.to_numpy(), "missing_query")
    )
    keep = ~(bad_rel.to_numpy() | no_query)
    raw, rel, query = raw[keep], rel[keep], query[keep]

    items = raw[["product_uid", "product_title", "_row"]].rename(
        columns={"product_uid": "item_id", "product_title": "title"}
    )
    items = items.assign(item_id=items["item_id"].str.strip())
    items = items.drop_duplicates("item_id")  # one product appears once per judged query
    report.rows_read["items"] = len(items)
    items = clean_items(items, report, q)
    events = pd.DataFrame(
        {
            "event_id": raw["id"].str.strip(),
            "item_id": raw["product_uid"].str.strip(),
            "event_type": "search",
            "query": query,
            "relevance": rel,
            "_row": raw["_row"],
        },
        index=raw.index,
    )
    events = clean_events(events, report, q, source=raw, catalogue=items["item_id"], require_actor=False)
    report.seconds = time.perf_counter() - started
    report.notes.append("judged (query, product) pairs as anonymous search events with graded relevance 1..3")
    return ImportResult(
        name=name,
        tables={"items": items, "events": events},
        quarantine=q.frame(),
        report=report,
        meta={"kind": "search"},
    )
