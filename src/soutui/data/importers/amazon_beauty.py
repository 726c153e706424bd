"""Importer for Amazon 2014 "Beauty" 5-core reviews in the S3-Rec layout (the standard benchmark).

Each review is a purchase event. Rows are written in (user, position) order with
event ids `<user>:<position>` because `SequenceData.from_events` breaks timestamp ties
by row order: that is what makes the imported store reproduce `Beauty.txt` exactly.
Item and user ids are the benchmark's integer ids (as text), so published splits and
numbers line up; the ASIN is kept in the item's attributes.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items, with_row_numbers
from soutui.data.importers.base import (
    DataError,
    ImportResult,
    dataset_root,
    json_column,
    read_delimited,
    require_file,
)

INTERACTIONS = "beauty_interactions.tsv"
TITLES = "beauty_item_titles.tsv"
ATTRIBUTES = "Beauty_item2attributes.json"


def _read_attributes(path: Path) -> dict[str, list[int]]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"amazon-beauty: {path} is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"amazon-beauty: {path} must map item id -> list of attribute ids")
    return {str(k): [int(x) for x in v] for k, v in raw.items()}


def impute_timestamps(ts: pd.Series, users: pd.Series, items: pd.Series) -> tuple[pd.Series, int, int]:
    """Fill missing timestamps; returns (filled, from the user's own events, from the items).

    First from the same user's neighbouring events (previous, else next): rows are in
    sequence order and timestamps never decrease along a sequence, so this keeps the
    order. Users with no timestamp at all get each item's median review time, made
    non-decreasing along their sequence (a cumulative max) so the order still holds;
    an item no one dated falls back to the global median. Both medians read training
    events only (each user's events but the last two, the leave-one-out validation and
    test targets), so no held-out review time leaks into another user's history.
    """
    missing = int(ts.isna().sum())
    if not missing:
        return ts, 0, 0
    filled = ts.groupby(users, sort=False).ffill().groupby(users, sort=False).bfill().astype("Int64")
    by_user = missing - int(filled.isna().sum())
    still = filled.isna()
    if still.any():
        train = users.groupby(users, sort=False).cumcount(ascending=False).to_numpy() >= 2
        item_median = ts[train].groupby(items[train]).median()
        guess = items[still].map(item_median).round().astype("Int64")
        guess = guess.fillna(round(float(ts[train].median())))  # items nobody dated: the global median
        guess = guess.groupby(users[still], sort=False).cummax().astype("Int64")
        filled = filled.mask(still, guess)
    by_item = int(still.sum()) - int(filled.isna().sum())
    return filled.astype("Int64"), by_user, by_item


def _read_interactions(root: Path, report: ImportReport, q: Quarantine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reviews in (user, position) order and their canonical purchase events (timestamps filled)."""
    inter = read_delimited(
        require_file(root / INTERACTIONS, "amazon-beauty"),
        ["user_id", "item_id", "position", "timestamp"],
        "amazon-beauty",
        sep="\t",
    )
    inter = with_row_numbers(inter)
    report.rows_read["events"] = len(inter)
    pos = pd.to_numeric(inter["position"], errors="coerce")
    uid = pd.to_numeric(inter["user_id"], errors="coerce")
    bad = pos.isna() | uid.isna()
    if bad.any():  # a row we cannot place in a sequence: quarantine, never guess
        report.add_quarantined("bad_position", q.add("events", inter, bad.to_numpy(), "bad_position"))
        inter, pos, uid = inter[~bad], pos[~bad], uid[~bad]
    order = np.lexsort((pos.to_numpy(), uid.to_numpy()))
    inter = inter.iloc[order]
    pos = pos.iloc[order].astype("int64")
    ts = pd.to_numeric(inter["timestamp"], errors="coerce").astype("Int64")
    ts, from_user, from_item = impute_timestamps(ts, inter["user_id"], inter["item_id"])
    report.add_fixed("missing_ts_from_user_neighbours", from_user)
    report.add_fixed("missing_ts_from_item_median", from_item)
    users = inter["user_id"].astype("string").str.strip()
    events = pd.DataFrame(
        {
            "event_id": (users + ":" + pos.astype(str).str.zfill(5)).to_numpy(),
            "user_id": users.to_numpy(),
            "item_id": inter["item_id"].astype("string").str.strip().to_numpy(),
            "event_type": "purchase",
            "ts": ts.to_numpy(),
            "_row": inter["_row"].to_numpy(),
        },
        index=inter.index,
    )
    return inter, events


def _items_frame(root: Path, inter: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Every item id seen in the reviews, titles or attributes, with its title and attributes.

    The titles file carries HTML entities (`&egrave;`, `&#9733;`); they are decoded here, so the
    storefront, the search index and the text encoders all see the characters a shopper would.
    """
    titles = pd.DataFrame(columns=["item_id", "asin", "title"])
    if (root / TITLES).is_file():
        titles = read_delimited(
            root / TITLES, ["item_id", "title"], "amazon-beauty titles", sep="\t", quoting=3
        )
        titles = titles.drop_duplicates("item_id")
    attrs = _read_attributes(root / ATTRIBUTES)
    asin_by_item = dict(zip(inter["item_id"], inter["asin"], strict=True)) if "asin" in inter else {}
    ids = set(events["item_id"].dropna()) | set(titles["item_id"].dropna()) | set(attrs)
    item_ids = sorted(ids, key=lambda x: (0, int(x)) if x.isdigit() else (1, x))
    title_by_item = {
        i: html.unescape(t) if isinstance(t, str) else t
        for i, t in zip(titles["item_id"], titles["title"], strict=True)
    }
    extra = (
        {k: v for k, v in (("asin", asin_by_item.get(i)), ("attribute_ids", attrs.get(i))) if v is not None}
        for i in item_ids
    )
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [title_by_item.get(i) for i in item_ids],
            "attributes": json_column([a or None for a in extra]),
        }
    )


def build(data_dir: Path, name: str = "amazon-beauty") -> ImportResult:
    """Read `<data_dir>/amazon-beauty/` into canonical tables."""
    started = time.perf_counter()
    root = dataset_root(data_dir, "amazon-beauty")
    report = ImportReport(dataset=name, source=str(root))
    q = Quarantine()
    inter, events = _read_interactions(root, report, q)
    items = _items_frame(root, inter, events)
    report.rows_read["items"] = len(items)
    items = clean_items(items, report, q)
    events = clean_events(events, report, q, source=inter, catalogue=items["item_id"])
    user_table = pd.DataFrame({"user_id": pd.unique(events["user_id"])})
    report.seconds = time.perf_counter() - started
    report.notes.append(
        "reviews imported as purchase events; attributes hold the ASIN and S3-Rec attribute ids"
    )
    return ImportResult(
        name=name,
        tables={"items": items, "users": user_table, "events": events},
        quarantine=q.frame(),
        report=report,
        meta={"kind": "recommendation", "group": "user_id"},
    )
