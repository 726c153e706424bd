"""Importer for RecBole atomic files: `.inter` (interactions) and, optionally, `.item` (items).

Atomic files are tab-separated with a `name:type` header (types token, token_seq, float,
float_seq), e.g. `user_id:token  item_id:token  rating:float  timestamp:float`. The
`.inter` file needs `item_id` and `user_id` or `session_id`; `timestamp` (unix seconds)
orders each sequence, and rows with equal times keep their file order. Every interaction
becomes one event of `event_type` (RecBole does not say what the interaction was). The
`.item` file's `title` (or `movie_title` / `name`), `categories` / `category`, `brand` and
`price` fill the matching item columns; its other fields go into `attributes`. Ids are
kept as they are and no user is dropped as a bot (benchmark files are already filtered).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from soutui.data.cleaning import ImportReport, Quarantine, clean_events, clean_items, with_row_numbers
from soutui.data.importers.base import DataError, ImportResult, json_column, require_file

TITLE_FIELDS = ("title", "movie_title", "name", "item_name")
CATEGORY_FIELDS = ("categories", "category")


def read_atomic(path: Path, what: str, encoding: str = "utf-8") -> pd.DataFrame:
    """An atomic file as strings, columns named without their `:type` suffix."""
    require_file(path, what)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""], quoting=3,
                         encoding=encoding)  # fmt: skip
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{what}: cannot read {path}: {str(exc).splitlines()[0]}") from exc
    untyped = [c for c in df.columns if ":" not in str(c)]
    if untyped:
        raise DataError(
            f"{what}: {path} header must be RecBole's `name:type` fields (e.g. user_id:token); "
            f"found {untyped}"
        )
    return df.rename(columns=lambda c: str(c).split(":", 1)[0].strip())


def _events(inter: pd.DataFrame, path: Path, event_type: str, report: ImportReport) -> pd.DataFrame:
    if "item_id" not in inter or not ({"user_id", "session_id"} & set(inter)):
        raise DataError(
            f"recbole: {path} needs item_id:token and user_id:token (or session_id:token); found {list(inter)}"
        )
    ts = pd.to_numeric(inter["timestamp"], errors="coerce") if "timestamp" in inter else None
    width = len(str(len(inter)))  # zero-padded row numbers: ids sort in file order
    events = pd.DataFrame({"event_id": [f"{i:0{width}d}" for i in range(len(inter))]}, index=inter.index)
    for col in ("user_id", "session_id", "item_id"):
        if col in inter:
            events[col] = inter[col].astype("string").str.strip()
    events["event_type"] = event_type
    stamps = [pd.NA] * len(inter) if ts is None else [pd.NA if pd.isna(x) else int(x) for x in ts]
    events["ts"] = pd.array(stamps, dtype="Int64")
    dropped = sorted(set(inter) - {"user_id", "session_id", "item_id", "timestamp"})
    if dropped:
        report.notes.append(f"recbole: .inter fields not imported: {dropped}")
    return with_row_numbers(events)


def _items(item: pd.DataFrame | None, ids: list[str]) -> pd.DataFrame:
    """Catalogue: the .item rows (first of duplicated ids), plus any id only the interactions name."""
    if item is None:
        return pd.DataFrame({"item_id": pd.array(ids, dtype="string")})
    if "item_id" not in item:
        raise DataError(f"recbole: the .item file needs an item_id:token field; found {list(item)}")
    item = item.drop_duplicates("item_id")
    out = pd.DataFrame({"item_id": item["item_id"].astype("string").str.strip()})
    used = {"item_id"}
    for target, names in (("title", TITLE_FIELDS), ("category", CATEGORY_FIELDS), ("brand", ("brand",))):
        name = next((n for n in names if n in item), None)
        if name is not None:
            out[target] = item[name].astype("string")
            used.add(name)
    if "price" in item:
        out["price"] = pd.to_numeric(item["price"], errors="coerce").astype("Float64")
        used.add("price")
    rest = [c for c in item.columns if c not in used]
    if rest:
        out["attributes"] = json_column(
            [
                {k: v for k, v in zip(rest, row, strict=True) if not pd.isna(v)} or None
                for row in item[rest].itertuples(index=False)
            ]  # fmt: skip
        )
    extra = sorted(set(ids) - set(out["item_id"]))
    return pd.concat([out, pd.DataFrame({"item_id": pd.array(extra, dtype="string")})], ignore_index=True)


def build(
    inter_file: str | Path,
    name: str,
    item_file: str | Path | None = None,
    event_type: str = "purchase",
    encoding: str = "utf-8",
) -> ImportResult:
    """Read RecBole `.inter` (+ `.item`) atomic files into canonical tables."""
    started = time.perf_counter()
    inter_path = Path(inter_file)
    report = ImportReport(dataset=name, source=str(inter_path))
    inter = read_atomic(inter_path, "recbole .inter", encoding)
    report.rows_read["events"] = len(inter)
    events = _events(inter, inter_path, event_type, report)
    item = read_atomic(Path(item_file), "recbole .item", encoding) if item_file else None
    ids = sorted(set(events["item_id"].dropna()), key=lambda x: (0, int(x)) if x.isdigit() else (1, x))
    items = _items(item, ids)
    report.rows_read["items"] = len(items)
    q = Quarantine()
    items = clean_items(items, report, q)
    events = clean_events(events, report, q, catalogue=items["item_id"], detect_bots=False)
    group = "user_id" if "user_id" in events and events["user_id"].notna().any() else "session_id"
    report.seconds = time.perf_counter() - started
    report.notes.append(
        f"RecBole atomic files: each interaction is a {event_type} event; ids kept as they are; no bot filter"
    )
    tables = {"items": items, "events": events}
    if group == "user_id":
        tables["users"] = pd.DataFrame({"user_id": pd.unique(events["user_id"].dropna())})
    return ImportResult(
        name=name, tables=tables, quarantine=q.frame(), report=report,
        meta={"kind": "recommendation", "group": group},
    )  # fmt: skip
