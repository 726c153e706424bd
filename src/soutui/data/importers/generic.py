"""Importer for the user's own event (and item) files: CSV/TSV, JSON Lines or Parquet.

A column mapping (`user_id=uid,item_id=sku,ts=time,...`) names which source column
fills which canonical column; schema columns already named like the schema need no
mapping. Timestamps may be unix seconds, unix milliseconds or ISO dates; event types
are mapped to the canonical ones (synonyms below, plus the user's own map) and rows
with any other type are quarantined. Privacy is ON by default: user ids are
pseudonymised with a keyed HMAC and PII in queries is masked BEFORE cleaning, so not
even the quarantine holds the raw values.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data import privacy
from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items, with_row_numbers
from soutui.data.importers.base import DataError, ImportResult, check_columns, require_file
from soutui.data.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS

EVENT_TYPE_SYNONYMS: dict[str, str] = {
    "pageview": "view", "page_view": "view", "detail": "view", "view_item": "view", "impression_click": "click",
    "clicked": "click", "add_to_cart": "cart", "addtocart": "cart", "add-to-cart": "cart", "add": "cart",
    "basket": "cart", "transaction": "purchase", "order": "purchase", "buy": "purchase", "bought": "purchase",
    "checkout": "purchase", "sale": "purchase", "query": "search",
}  # fmt: skip
MS_THRESHOLD = 100_000_000_000  # a unix time above this (year 5138 in s) must be in milliseconds


@dataclass
class GenericOptions:
    """How to read the user's files (`soutui data import generic` flags)."""

    events: str
    name: str
    items: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # canonical event column -> source column
    item_mapping: dict[str, str] = field(default_factory=dict)  # canonical item column -> source column
    event_type: str | None = None  # constant type when the file has no type column
    event_type_map: dict[str, str] = field(default_factory=dict)  # source value -> canonical type
    pseudonymize: bool = True
    pseudonym_key_file: str | None = None
    mask_pii: bool = True
    mask_item_text: bool = False


def parse_mapping(
    text: str | None, allowed: Mapping[str, str] | tuple[str, ...], what: str
) -> dict[str, str]:
    """`a=x,b=y` -> {"a": "x", "b": "y"}, checking the left sides."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DataError(f"{what}: {part!r} is not KEY=VALUE (e.g. user_id=customer,item_id=sku)")
        k, v = (x.strip() for x in part.split("=", 1))
        if k not in allowed:
            raise DataError(f"{what}: unknown key {k!r}; allowed: {sorted(allowed)}")
        out[k] = v
    return out


def read_any(path: Path, what: str) -> pd.DataFrame:
    """Read CSV/TSV/JSONL/Parquet by suffix, as strings where the format allows."""
    require_file(path, what)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix.startswith((".csv", ".txt")):
            return pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], sep=None, engine="python"
            )
        if suffix.startswith(".tsv"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep="\t")
        if suffix.startswith((".jsonl", ".ndjson", ".json")):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(
            f"{what}: cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    raise DataError(f"{what}: {path} has an unknown format; use .csv, .tsv, .jsonl or .parquet")


def parse_ts(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Unix seconds / milliseconds / ISO text -> Int64 unix seconds; second value = unparseable mask."""
    text = raw.astype("string").str.strip()
    present = text.notna() & (text != "")
    num = pd.to_numeric(text, errors="coerce")
    secs = num.where(num.abs() < MS_THRESHOLD, num // 1000)
    iso = present & num.isna()
    if iso.any():
        dt = pd.to_datetime(text[iso], errors="coerce", utc=True, format="ISO8601")
        epoch = pd.Timestamp(0, tz="UTC")
        secs = secs.astype("Float64")
        secs[iso] = ((dt - epoch) // pd.Timedelta(seconds=1)).astype("Float64")
    out = pd.Series(secs, index=raw.index).round().astype("Int64")
    return out, (present & out.isna()).to_numpy(dtype=bool)


def _event_ids(ev: pd.DataFrame) -> pd.Series:
    """Content hash: the same event in the same file always gets the same id (idempotent re-import)."""
    cols = [c for c in ("user_id", "session_id", "item_id", "event_type", "query", "ts") if c in ev.columns]
    joined = (
        ev[cols].astype("string").fillna("\x00").agg("\x1f".join, axis=1) if cols else ev.index.astype(str)
    )
    return pd.Series(
        [hashlib.sha1(s.encode()).hexdigest()[:20] for s in joined], index=ev.index, dtype="string"
    )


def _apply_privacy(
    src: pd.DataFrame, opts: GenericOptions, report: ImportReport, cols: dict[str, str]
) -> pd.DataFrame:
    src = src.copy()
    if opts.pseudonymize and "user_id" in cols:
        key = privacy.load_key(opts.pseudonym_key_file)
        col = cols["user_id"]
        src[col] = privacy.pseudonymize(src[col], key)
        report.privacy["users_pseudonymised"] = int(src[col].nunique())
    if opts.mask_pii and "query" in cols:
        src[cols["query"]], counts = privacy.mask_series(src[cols["query"]])
        for kind, n in counts.items():
            report.privacy[f"pii_masked_{kind}"] = report.privacy.get(f"pii_masked_{kind}", 0) + n
    return src


def build(opts: GenericOptions) -> ImportResult:
    started = time.perf_counter()
    report = ImportReport(dataset=opts.name, source=opts.events)
    q = Quarantine()
    raw = read_any(Path(opts.events), "events file")
    cols = {c: c for c in EVENT_COLUMNS if c in raw.columns} | opts.mapping
    check_columns(raw, list(cols.values()), f"events file {opts.events} (check --map)")
    if "item_id" not in cols:
        raise DataError(f"events file {opts.events}: no item column; map one with --map item_id=COLUMN")
    if "event_type" not in cols and not opts.event_type:
        raise DataError(
            f"events file {opts.events}: no event type column; map one (--map event_type=COLUMN) or give --event-type"
        )
    raw = with_row_numbers(raw.reset_index(drop=True))
    report.rows_read["events"] = len(raw)
    src = _apply_privacy(raw, opts, report, cols)

    ev = pd.DataFrame(index=src.index)
    for canon, col in cols.items():
        if canon not in ("ts", "relevance"):
            ev[canon] = src[col].astype("string").str.strip()
    types = (
        ev["event_type"].str.lower()
        if "event_type" in ev
        else pd.Series(opts.event_type, index=src.index, dtype="string")
    )
    type_map = {**EVENT_TYPE_SYNONYMS, **{k.lower(): v for k, v in opts.event_type_map.items()}}
    bad_targets = sorted({v for v in type_map.values() if v not in EVENT_TYPES})
    if bad_targets:
        raise DataError(f"--event-type-map maps to {bad_targets}; canonical types are {list(EVENT_TYPES)}")
    ev["event_type"] = types.map(lambda t: type_map.get(t, t) if isinstance(t, str) else t).astype("string")
    if "ts" in cols:
        ev["ts"], malformed = parse_ts(src[cols["ts"]])
        report.add_quarantined("malformed_ts", q.add("events", src, malformed, "malformed_ts"))
        ev, src = ev[~malformed], src[~malformed]
    if "relevance" in cols:
        ev["relevance"] = pd.to_numeric(src[cols["relevance"]], errors="coerce")
    if "event_id" not in cols:
        ev["event_id"] = _event_ids(ev)
    ev["_row"] = src["_row"]

    items = None
    if opts.items:
        items = _read_items(opts, report, q)
    events = clean_events(
        ev, report, q, source=src, catalogue=items["item_id"] if items is not None else None
    )
    if items is None:
        items = pd.DataFrame({"item_id": pd.unique(events["item_id"].dropna())})
    users = pd.DataFrame({"user_id": pd.unique(events["user_id"].dropna())}) if "user_id" in events else None
    report.seconds = time.perf_counter() - started
    report.notes.append(
        f"privacy: user ids {'pseudonymised (HMAC-SHA256)' if opts.pseudonymize else 'kept as given'}, "
        f"PII in queries {'masked' if opts.mask_pii else 'not masked'}"
    )
    tables = {"items": items, "events": events} | ({"users": users} if users is not None else {})
    meta = {"kind": "generic", "events_file": opts.events, "mapping": json.dumps(cols, sort_keys=True),
            "pseudonymised": str(opts.pseudonymize).lower()}  # fmt: skip
    return ImportResult(name=opts.name, tables=tables, quarantine=q.frame(), report=report, meta=meta)


def _read_items(opts: GenericOptions, report: ImportReport, q: Quarantine) -> pd.DataFrame:
    assert opts.items is not None
    raw = read_any(Path(opts.items), "items file")
    cols = {c: c for c in ITEM_COLUMNS if c in raw.columns} | opts.item_mapping
    check_columns(raw, list(cols.values()), f"items file {opts.items} (check --item-map)")
    if "item_id" not in cols:
        raise DataError(f"items file {opts.items}: no item id column; map one with --item-map item_id=COLUMN")
    raw = with_row_numbers(raw.reset_index(drop=True))
    report.rows_read["items"] = len(raw)
    items = pd.DataFrame({canon: raw[col] for canon, col in cols.items()}, index=raw.index)
    for c in ("item_id", "title", "description", "category", "brand"):
        if c in items:
            items[c] = items[c].astype("string").str.strip()
    if "in_stock" in items:
        items["in_stock"] = (
            items["in_stock"]
            .astype("string")
            .str.lower()
            .map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False})
        )
    if "attributes" in items:
        items["attributes"] = [
            None if pd.isna(a) else a if isinstance(a, str) else json.dumps(a) for a in items["attributes"]
        ]
    if opts.mask_item_text:
        for c in ("title", "description"):
            if c in items:
                items[c], counts = privacy.mask_series(items[c])
                for kind, n in counts.items():
                    report.privacy[f"pii_masked_{kind}"] = report.privacy.get(f"pii_masked_{kind}", 0) + n
    items["_row"] = raw["_row"]
    return clean_items(items, report, q, source=raw)
