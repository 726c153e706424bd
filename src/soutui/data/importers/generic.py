"""Importer for the user's own event (and item) files: CSV/TSV, JSON Lines or Parquet.

A column mapping (`user_id=uid,item_id=sku,ts=time,...`) names which source column
fills which canonical column; schema columns already named like the schema need no
mapping. Timestamps may be unix seconds, unix milliseconds or ISO dates; event types
are mapped to the canonical ones (synonyms below, plus the user's own map) and rows
with any other type are quarantined. Privacy is ON by default: user and session ids
are pseudonymised with a keyed HMAC, PII in the other mapped text columns is masked and
unmapped columns are dropped BEFORE cleaning, so not even the quarantine holds the raw
values. Lines that cannot be parsed are quarantined by line number (`readers`); the
quarantine's `row` is the line number in the file. Search events and relevance
judgments need no user column; without a `ts` column the report warns that the order
is the file's.

The events file is read a chunk of `chunk_rows` rows at a time (`readers.iter_table`): each
chunk is pseudonymised, masked and given the per-row checks, then spilled to a scratch
DuckDB file (`staging`), where duplicates, unknown items and bots are found across all
chunks. `stage` hands the kept events to `write_result` chunk by chunk (memory bounded by a
chunk); `build` gathers them into frames. Both give the same rows, quarantine and report
whatever the chunk size. The items file is read whole.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from soutui.data import privacy
from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items
from soutui.data.importers.base import DataError, ImportResult, check_columns
from soutui.data.importers.readers import ReadResult, iter_table, nested_rows, read_table
from soutui.data.importers.staging import Staging
from soutui.data.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, fill_event_ids

EVENT_TYPE_SYNONYMS: dict[str, str] = {
    "pageview": "view", "page_view": "view", "detail": "view", "view_item": "view", "impression_click": "click",
    "clicked": "click", "add_to_cart": "cart", "addtocart": "cart", "add-to-cart": "cart", "add": "cart",
    "basket": "cart", "transaction": "purchase", "order": "purchase", "buy": "purchase", "bought": "purchase",
    "checkout": "purchase", "sale": "purchase", "query": "search",
}  # fmt: skip
MS_THRESHOLD = 100_000_000_000  # a unix time above this (year 5138 in s) must be in milliseconds
CHUNK_ROWS = 500_000  # events read, cleaned and spilled at a time (peak memory scales with this)


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
    encoding: str = "utf-8"  # of CSV/TSV/JSONL files; a UTF-8 byte-order mark is always understood


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


ID_COLUMNS = ("user_id", "session_id")  # pseudonymised with the dataset key
KEEP_AS_IS = ("item_id", "event_type", "ts", "relevance", "event_id")  # not personal: left unmasked


def _apply_privacy(
    src: pd.DataFrame, opts: GenericOptions, report: ImportReport, cols: dict[str, str], key: bytes | None,
    staging: Staging,
) -> tuple[pd.DataFrame, list[str]]:
    """The mapped source columns with privacy applied; what both the store and the quarantine see.

    User and session ids are pseudonymised, every other mapped text column is PII-masked,
    and unmapped columns are dropped: they never reach the store, not even the quarantine.
    Returns the frame and the dropped columns; distinct pseudonyms are counted by `staging`.
    """
    keep = list(dict.fromkeys(cols.values()))
    out = src.reindex(columns=[*keep, "_row"]).copy()  # a JSONL chunk may lack a key other chunks have
    for canon, col in cols.items():
        if canon in ID_COLUMNS and key is not None:
            out[col] = privacy.pseudonymize(out[col].astype("string").str.strip(), key)
            staging.add_ids("users_pseudonymised" if canon == "user_id" else "sessions_pseudonymised", out[col])
        elif canon not in KEEP_AS_IS and canon not in ID_COLUMNS and opts.mask_pii:
            masked, counts = privacy.mask_series(
                out[col].map(lambda v: v if isinstance(v, str) or v is None else str(v))
            )
            out[col] = masked.astype(object).where(masked.notna(), None)
            for kind, n in counts.items():
                report.privacy[f"pii_masked_{kind}"] = report.privacy.get(f"pii_masked_{kind}", 0) + n
    return out, [c for c in src.columns if c not in keep and c != "_row"]


def _check_mapping(raw: pd.DataFrame, opts: GenericOptions) -> dict[str, str]:
    cols = {c: c for c in EVENT_COLUMNS if c in raw.columns} | opts.mapping
    check_columns(raw, list(cols.values()), f"events file {opts.events} (check --map)")
    if "item_id" not in cols and "query" not in cols:
        raise DataError(f"events file {opts.events}: no item column; map one with --map item_id=COLUMN")
    if "event_type" not in cols and not opts.event_type and "relevance" not in cols:
        raise DataError(
            f"events file {opts.events}: no event type column; map one (--map event_type=COLUMN) or give --event-type"
        )
    return cols


def _event_types(ev: pd.DataFrame, src: pd.DataFrame, opts: GenericOptions) -> pd.Series:
    types = (
        ev["event_type"].str.lower()
        if "event_type" in ev
        else pd.Series(opts.event_type or "search", index=src.index, dtype="string")  # judgments: search
    )
    type_map = {**EVENT_TYPE_SYNONYMS, **{k.lower(): v for k, v in opts.event_type_map.items()}}
    bad_targets = sorted({v for v in type_map.values() if v not in EVENT_TYPES})
    if bad_targets:
        raise DataError(f"--event-type-map maps to {bad_targets}; canonical types are {list(EVENT_TYPES)}")
    return types.map(lambda t: type_map.get(t, t) if isinstance(t, str) else t).astype("string")


def _canonical_events(
    src: pd.DataFrame, cols: dict[str, str], opts: GenericOptions, report: ImportReport, q: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map source columns onto canonical events; bad timestamps are quarantined here."""
    nested = nested_rows(src, list(cols.values()))
    report.add_quarantined("nested_value", q.add("events", src, nested, "nested_value"))
    src = src[~nested.to_numpy()]
    ev = pd.DataFrame(index=src.index)
    for canon, col in cols.items():
        if canon not in ("ts", "relevance"):
            ev[canon] = src[col].astype("string").str.strip()
    if "item_id" not in ev:  # a search log without clicks: non-search rows are quarantined as missing_item
        ev["item_id"] = pd.Series(pd.NA, index=src.index, dtype="string")
    ev["event_type"] = _event_types(ev, src, opts)
    if "ts" in cols:
        ev["ts"], malformed = parse_ts(src[cols["ts"]])
        report.add_quarantined("malformed_ts", q.add("events", src, malformed, "malformed_ts"))
        missing = ev["ts"].isna().to_numpy() & ~malformed
        report.add_quarantined("missing_ts", q.add("events", src, missing, "missing_ts"))
        keep = ~(malformed | missing)
        ev, src = ev[keep], src[keep]
    if "relevance" in cols:
        ev["relevance"] = pd.to_numeric(src[cols["relevance"]], errors="coerce")
    ev, n = fill_event_ids(ev)
    if "event_id" in cols:
        report.add_fixed("blank_event_id", n)
    ev["_row"] = src["_row"]
    return ev, src


def stage(opts: GenericOptions, chunk_rows: int = CHUNK_ROWS) -> ImportResult:
    """Import the events file a chunk at a time; the result's events and quarantine stay in
    `ImportResult.staged` (a scratch file) for `write_result` to write chunk by chunk."""
    started, now = time.perf_counter(), time.time()
    report = ImportReport(dataset=opts.name, source=opts.events)
    chunks = iter_table(Path(opts.events), "events file", opts.encoding, chunk_rows)
    first = next(chunks)  # the file's own errors (missing, empty, undecodable) come first
    cols = _check_mapping(first.frame, opts)
    key = privacy.load_key(opts.pseudonym_key_file) if opts.pseudonymize else None
    report.rows_read["events"] = 0
    staging = Staging(chunk_rows)
    try:
        items = None
        if opts.items:
            q = Quarantine()
            items = _read_items(opts, report, q)
            staging.add_quarantine(q.frame())
        dropped: dict[str, None] = {}
        for read in itertools.chain([first], chunks):
            cols |= _late_columns(read, cols, opts)
            dropped |= dict.fromkeys(_stage_chunk(read, cols, key, opts, report, staging, now))
        report.privacy |= staging.distinct_ids()
        for reason, n in staging.finish(items["item_id"] if items is not None else None).items():
            report.add_quarantined(reason, n)
        tables = {"items": items if items is not None else staging.first_seen("item_id")}
        if "user_id" in staging.columns:
            tables["users"] = staging.first_seen("user_id")
    except BaseException:
        staging.close()
        raise
    if dropped:
        report.notes.append(f"unmapped columns not imported (nor kept in the quarantine): {list(dropped)}")
    if "ts" not in cols:
        report.warnings.append(
            "no ts column: events are ordered as they appear in the file, and time-based splits and "
            "recency use that order; map a timestamp with --map ts=COLUMN if the file has one"
        )
    report.notes.append(
        f"privacy: user and session ids {'pseudonymised (HMAC-SHA256)' if opts.pseudonymize else 'kept as given'}, "
        f"PII in text columns {'masked' if opts.mask_pii else 'not masked'} (quarantine included)"
    )
    report.seconds = time.perf_counter() - started
    meta = {"kind": "generic", "events_file": opts.events, "mapping": json.dumps(cols, sort_keys=True),
            "pseudonymised": str(opts.pseudonymize).lower()}  # fmt: skip
    empty_q = Quarantine().frame()
    return ImportResult(name=opts.name, tables=tables, quarantine=empty_q, report=report, meta=meta, staged=staging)


LATE_OK = ("user_id", "session_id", "query")  # a column that may first appear after the first chunk


def _late_columns(read: ReadResult, cols: dict[str, str], opts: GenericOptions) -> dict[str, str]:
    """Canonical columns a later chunk brings (a JSONL key first used after the first chunk), as the
    whole-file importer would map them. Only columns no earlier row's checks depend on are taken;
    the others are refused with what to do, rather than imported under different rules."""
    new = {c: c for c in EVENT_COLUMNS if c in read.frame.columns and c not in cols and c not in cols.values()}
    late = sorted(set(new) - set(LATE_OK))
    if late:
        row = int(read.frame["_row"].iloc[0]) if "_row" in read.frame and len(read.frame) else 0
        raise DataError(
            f"events file {opts.events}: column(s) {late} first appear at line {row:,} or later, but the rows before "
            "were already checked without them; put every column in the first line (JSONL: give the first "
            "record every key, null where unknown) or import with a larger --chunk-rows"
        )
    return new


def _stage_chunk(
    read: ReadResult, cols: dict[str, str], key: bytes | None, opts: GenericOptions, report: ImportReport,
    staging: Staging, now: float,
) -> list[str]:
    """Read rows -> privacy -> canonical -> per-row checks -> staging; returns the unmapped columns."""
    q = Quarantine()
    report.rows_read["events"] += len(read.frame) + len(read.bad_lines)
    report.add_quarantined("bad_line", q.add_lines("events", read.bad_lines))
    for what, n in read.coerced.items():
        report.add_fixed(what, n)
    src, dropped = _apply_privacy(read.frame.reset_index(drop=True), opts, report, cols, key, staging)
    ev, src = _canonical_events(src, cols, opts, report, q)
    ev = clean_events(ev, report, q, source=src, now=now, row_checks_only=True)
    staging.add_events(ev, src)
    staging.add_quarantine(q.frame())
    return dropped


def build(opts: GenericOptions, chunk_rows: int = CHUNK_ROWS) -> ImportResult:
    """`stage`, with the events and the quarantine gathered into frames (small files, tests)."""
    res = stage(opts, chunk_rows)
    assert res.staged is not None
    try:
        parts = list(res.staged.events())
        events = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=res.staged.columns)
        quarantine = pd.concat([Quarantine().frame(), *res.staged.quarantine()], ignore_index=True)
    finally:
        res.staged.close()
    tables = {"items": res.tables["items"], "events": events}
    if "users" in res.tables:
        tables["users"] = res.tables["users"]
    return ImportResult(name=res.name, tables=tables, quarantine=quarantine.astype("string"), report=res.report,
                        meta=res.meta)  # fmt: skip


def _read_items(opts: GenericOptions, report: ImportReport, q: Quarantine) -> pd.DataFrame:
    assert opts.items is not None
    read = read_table(Path(opts.items), "items file", opts.encoding)
    raw = read.frame.drop(columns="_row")
    cols = {c: c for c in ITEM_COLUMNS if c in raw.columns} | opts.item_mapping
    check_columns(raw, list(cols.values()), f"items file {opts.items} (check --item-map)")
    if "item_id" not in cols:
        raise DataError(f"items file {opts.items}: no item id column; map one with --item-map item_id=COLUMN")
    mapped = list(dict.fromkeys(cols.values()))  # unmapped columns reach neither the store nor the quarantine
    raw = raw[mapped].reset_index(drop=True).assign(_row=read.frame["_row"].to_numpy())
    report.rows_read["items"] = len(raw) + len(read.bad_lines)
    report.add_quarantined("bad_line", q.add_lines("items", read.bad_lines))
    nested = nested_rows(raw, [c for k, c in cols.items() if k != "attributes"]).to_numpy()
    report.add_quarantined("nested_value", q.add("items", raw, nested, "nested_value"))
    raw = raw[~nested]
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
            None
            if a is None or a is pd.NA
            else a
            if isinstance(a, str)
            else json.dumps(a, ensure_ascii=False)
            for a in items["attributes"]
        ]
    if opts.mask_item_text:
        for c in ("title", "description"):
            if c in items:
                items[c], counts = privacy.mask_series(items[c])
                for kind, n in counts.items():
                    report.privacy[f"pii_masked_{kind}"] = report.privacy.get(f"pii_masked_{kind}", 0) + n
    items["_row"] = raw["_row"]
    return clean_items(items, report, q, source=raw)
