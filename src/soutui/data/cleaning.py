"""Cleaning and validation shared by every importer: fix what is fixable, quarantine the rest.

Importers map a source onto the canonical columns and hand the frame here. Every row
that is rejected is kept, with its reason and original content, in a quarantine table
written in the same transaction as the clean data, so nothing disappears silently and
a user can inspect (and re-import) what was refused. The counts go into an
`ImportReport` that the CLI prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.schema import EVENT_TYPES, QUARANTINE_COLUMNS

# clean_events' reasons in the order it applies them: one row at a time, then across all rows
ROW_REASONS = ("bad_event_type", "missing_item", "nul_in_id", "missing_user", "impossible_ts")
LATE_REASONS = ("duplicate_row", "duplicate_event_id", "unknown_item", "abnormal_user")
MIN_TS = 788_918_400  # 1995-01-01 UTC: e-commerce logs before this are clock errors
FUTURE_SLACK_S = 86_400  # tolerate one day of clock skew into the future
BOT_MIN_EVENTS = 1000  # no human has fewer events than this flagged as a bot ...
BOT_MEDIAN_FACTOR = 50  # ... and a bot has > 50x the median user's events


@dataclass
class ImportReport:
    """What an import read, kept, repaired and refused, by table and by reason."""

    dataset: str
    source: str
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    fixed: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    privacy: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add_fixed(self, reason: str, n: int) -> None:
        if n:
            self.fixed[reason] = self.fixed.get(reason, 0) + int(n)

    def add_quarantined(self, reason: str, n: int) -> None:
        if n:
            self.quarantined[reason] = self.quarantined.get(reason, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "rows_read": dict(self.rows_read),
            "rows_kept": dict(self.rows_kept),
            "fixed": dict(sorted(self.fixed.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "quarantined_total": int(sum(self.quarantined.values())),
            "privacy": dict(sorted(self.privacy.items())),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


class Quarantine:
    """Collects rejected rows (table, source row number, reason, original row as JSON)."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(self, table: str, source: pd.DataFrame, mask: np.ndarray | pd.Series, reason: str) -> int:
        """Quarantine the rows of `source` selected by `mask`; `source` must carry `_row`."""
        sel = source[np.asarray(mask, dtype=bool)]
        if not len(sel):
            return 0
        self._parts.append(
            pd.DataFrame(
                {
                    "table": table,
                    "row": sel["_row"].astype("int64").astype(str).to_numpy(),
                    "reason": reason,
                    "data": row_json(sel),
                }
            )
        )
        return len(sel)

    def add_lines(self, table: str, bad_lines: list[tuple[int, str]]) -> int:
        """Quarantine lines that could not be parsed: line number and problem, not the text.

        The text is left out on purpose: it cannot be split into columns, so it cannot be
        pseudonymised or masked column by column, and the line number finds it in the file.
        """
        if not bad_lines:
            return 0
        self._parts.append(
            pd.DataFrame(
                {
                    "table": table,
                    "row": [str(n) for n, _ in bad_lines],
                    "reason": "bad_line",
                    "data": [
                        json.dumps({"line": n, "problem": why}, ensure_ascii=False) for n, why in bad_lines
                    ],
                }
            )
        )
        return len(bad_lines)

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame({c: pd.Series(dtype="string") for c in QUARANTINE_COLUMNS})
        return pd.concat(self._parts, ignore_index=True).astype("string")

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)


def row_json(rows: pd.DataFrame) -> list[str]:
    """Each row's columns (helper columns, `_...`, left out) as a JSON object: a quarantine's `data`."""
    data_cols = [c for c in rows.columns if not str(c).startswith("_")]
    records = rows[data_cols].astype(object).where(rows[data_cols].notna(), None).to_dict("records")
    return [json.dumps(r, ensure_ascii=False, default=str) for r in records]


def with_row_numbers(df: pd.DataFrame, start: int = 1) -> pd.DataFrame:
    """Attach `_row`: 1-based record number in the source (header excluded)."""
    return df.assign(_row=np.arange(start, start + len(df), dtype=np.int64))


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype("string").str.strip() == "")


def _has_nul(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Rows with a NUL byte in one of `columns`: such ids break files, logs and C tools downstream."""
    bad = pd.Series(False, index=df.index)
    for c in columns:
        if c in df.columns:
            bad |= df[c].astype("string").str.contains("\x00", regex=False).fillna(False).astype(bool)
    return bad


def clean_events(
    ev: pd.DataFrame,
    report: ImportReport,
    quarantine: Quarantine,
    source: pd.DataFrame | None = None,
    catalogue: pd.Series | None = None,
    require_actor: bool = True,
    detect_bots: bool = True,
    now: float | None = None,
    row_checks_only: bool = False,
) -> pd.DataFrame:
    """Validate canonical events; return the kept rows (in input order).

    `ev` has canonical columns plus `_row`; `source` (same index) holds the original
    rows written to quarantine (defaults to `ev`). `catalogue` is the set of known item
    ids: events on other items are quarantined when it is given. `require_actor`: every
    event needs a user or session, except search events and judged rows (with a relevance),
    which describe a query, not a person (search-log datasets without either pass False).
    `row_checks_only`: only the checks of one row at a time (ROW_REASONS), what a chunked import
    runs per chunk (its staging applies LATE_REASONS across chunks).
    """
    src = source if source is not None else ev
    if "_row" not in src.columns:
        src = src.assign(_row=ev["_row"])
    now = time.time() if now is None else now

    def reject(frame: pd.DataFrame, bad: pd.Series, reason: str) -> pd.DataFrame:
        bad = bad.fillna(False).astype(bool)
        if bad.any():
            n = quarantine.add(
                "events", src.loc[frame.index[bad.to_numpy()]], np.ones(int(bad.sum()), bool), reason
            )
            report.add_quarantined(reason, n)
        return frame[~bad.to_numpy()]

    if "event_type" in ev.columns:
        ev = ev.assign(event_type=ev["event_type"].astype("string").str.strip().str.lower())
    ev = reject(ev, ~ev["event_type"].isin(EVENT_TYPES), "bad_event_type")
    is_search = (ev["event_type"] == "search") & ~_blank(ev.get("query", pd.Series(pd.NA, index=ev.index)))
    ev = reject(ev, _blank(ev["item_id"]) & ~is_search.reindex(ev.index, fill_value=False), "missing_item")
    ev = reject(ev, _has_nul(ev, ("event_id", "user_id", "session_id", "item_id")), "nul_in_id")
    if require_actor:
        user = ev["user_id"] if "user_id" in ev else pd.Series(pd.NA, index=ev.index)
        sess = ev["session_id"] if "session_id" in ev else pd.Series(pd.NA, index=ev.index)
        judged = ev["relevance"].notna() if "relevance" in ev else pd.Series(False, index=ev.index)
        about_query = (ev["event_type"] == "search") | judged
        ev = reject(ev, _blank(user) & _blank(sess) & ~about_query.fillna(False), "missing_user")
    if "ts" in ev.columns:
        ts = pd.to_numeric(ev["ts"], errors="coerce")
        ev = reject(ev, ts.notna() & ((ts < MIN_TS) | (ts > now + FUTURE_SLACK_S)), "impossible_ts")
    return ev if row_checks_only else _across_rows(ev, reject, catalogue, detect_bots)


def _across_rows(
    ev: pd.DataFrame,
    reject: Callable[[pd.DataFrame, pd.Series, str], pd.DataFrame],
    catalogue: pd.Series | None,
    detect_bots: bool,
) -> pd.DataFrame:
    """clean_events' checks that need every row (LATE_REASONS), in that order."""
    canon = [c for c in ev.columns if not str(c).startswith("_")]
    ev = reject(ev, ev.duplicated(subset=canon, keep="first"), "duplicate_row")
    if "event_id" in ev.columns:
        ev = reject(
            ev,
            ev["event_id"].notna() & ev.duplicated(subset=["event_id"], keep="first"),
            "duplicate_event_id",
        )
    if catalogue is not None:
        known = pd.Index(catalogue.astype(str).unique())
        ev = reject(ev, ev["item_id"].notna() & ~ev["item_id"].astype(str).isin(known), "unknown_item")
    if detect_bots:
        ev = reject(ev, abnormal_actors(ev), "abnormal_user")
    return ev


def abnormal_actors(ev: pd.DataFrame) -> pd.Series:
    """Mask of events by users (or sessions, when anonymous) with far more events than any human.

    Robust threshold max(BOT_MIN_EVENTS, BOT_MEDIAN_FACTOR * median events per actor): the
    median ignores the bots themselves, and the floor keeps a heavy but human shopper safe.
    """
    key = (
        ev["user_id"].astype("string")
        if "user_id" in ev
        else pd.Series(pd.NA, index=ev.index, dtype="string")
    )
    if "session_id" in ev:
        key = key.fillna("session:" + ev["session_id"].astype("string"))
    if key.notna().sum() == 0:
        return pd.Series(False, index=ev.index)
    counts = key.value_counts()
    threshold = max(BOT_MIN_EVENTS, BOT_MEDIAN_FACTOR * float(counts.median()))
    bots = counts.index[counts > threshold]
    return key.isin(bots).fillna(False)


def clean_prices(items: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Negative or non-numeric prices become null (the item stays); counted as fixed."""
    if "price" not in items.columns:
        return items
    raw = items["price"]
    num = pd.to_numeric(raw.astype("string").str.replace(r"[$,\s]", "", regex=True), errors="coerce")
    bad = (raw.notna() & ~_blank(raw) & num.isna()) | (num < 0)
    report.add_fixed("bad_price", int(bad.sum()))
    return items.assign(price=num.where(~bad))


def clean_items(
    items: pd.DataFrame, report: ImportReport, quarantine: Quarantine, source: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Items need an id; a repeated id keeps its first row; bad prices are nulled.

    `source` (same index, with `_row`) holds the original rows for the quarantine.
    """
    if "_row" not in items.columns:
        items = with_row_numbers(items)
    src = source if source is not None else items
    nul = _has_nul(items, ("item_id",)).to_numpy()
    report.add_quarantined(
        "nul_in_id",
        quarantine.add("items", src.loc[items.index[nul]], np.ones(int(nul.sum()), bool), "nul_in_id"),
    )
    items = items[~nul]
    missing = _blank(items["item_id"]).to_numpy()
    report.add_quarantined(
        "missing_item_id",
        quarantine.add(
            "items", src.loc[items.index[missing]], np.ones(int(missing.sum()), bool), "missing_item_id"
        ),
    )
    items = items[~missing]
    dup = items["item_id"].astype(str).duplicated(keep="first").to_numpy()
    report.add_quarantined(
        "duplicate_item",
        quarantine.add("items", src.loc[items.index[dup]], np.ones(int(dup.sum()), bool), "duplicate_item"),
    )
    items = items[~dup]
    return clean_prices(items, report)


def drop_private(df: pd.DataFrame) -> pd.DataFrame:
    """Drop helper columns (leading underscore) before writing."""
    return df[[c for c in df.columns if not str(c).startswith("_")]]
