"""The canonical schema every importer writes and every later stage reads.

Three tables: items, users, events. Column order and dtypes are fixed here so a
DataFrame can be checked (`conform`) before it reaches the store.
"""

from __future__ import annotations

import hashlib

import pandas as pd

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "search")

# column -> pandas dtype
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "description": "string",
    "category": "string",  # category path, levels joined by " > "
    "brand": "string",
    "price": "Float64",
    "attributes": "string",  # JSON object text
    "in_stock": "boolean",
}
USER_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "attributes": "string",  # JSON object text
}
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "user_id": "string",
    "item_id": "string",  # null for search events without a clicked item
    "event_type": "string",
    "query": "string",  # query text for search events
    "session_id": "string",
    "ts": "Int64",  # unix seconds, UTC
    "relevance": "Float64",  # graded human label (search datasets), else null
}

TABLES: dict[str, dict[str, str]] = {"items": ITEM_COLUMNS, "users": USER_COLUMNS, "events": EVENT_COLUMNS}
QUARANTINE_COLUMNS = ["table", "row", "reason", "data"]  # one row refused by cleaning, and why

CATEGORY_SEP = " > "


def empty(table: str) -> pd.DataFrame:
    cols = TABLES[table]
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return `df` with exactly the schema's columns, in order, with the schema's dtypes.

    Missing optional columns are added as nulls; extra columns are an error so a
    mapping mistake is caught instead of being silently dropped.
    """
    cols = TABLES[table]
    extra = sorted(set(df.columns) - set(cols))
    if extra:
        raise ValueError(f"{table}: columns {extra} are not in the schema; allowed: {list(cols)}")
    out = pd.DataFrame(index=df.index)
    for c, t in cols.items():
        out[c] = df[c].astype(t) if c in df.columns else pd.Series(pd.NA, index=df.index, dtype=t)
    return out.reset_index(drop=True)


# Columns whose values define an event when it has no id of its own (event_id excluded).
CONTENT_ID_COLUMNS: tuple[str, ...] = (
    "user_id",
    "session_id",
    "item_id",
    "event_type",
    "query",
    "ts",
    "relevance",
)
_NULL = "\x00"
_SEP = "\x1f"


def content_ids(events: pd.DataFrame) -> pd.Series:
    """A deterministic id per event from its content: sha1 over the normalised row, 20 hex digits.

    The same event always gets the same id, so a re-import or a replayed live event is
    recognised as a duplicate instead of being stored twice. `content_id_sql` computes
    the same value inside DuckDB (used to repair stored rows without an id).
    """
    parts = [
        events[c].astype("string").str.strip().fillna(_NULL)
        if c in events.columns
        else pd.Series(_NULL, index=events.index, dtype="string")
        for c in CONTENT_ID_COLUMNS
    ]
    joined = parts[0].str.cat(parts[1:], sep=_SEP) if len(events) else pd.Series([], dtype="string")
    return pd.Series(
        [hashlib.sha1(s.encode("utf-8")).hexdigest()[:20] for s in joined], index=events.index, dtype="string"
    )


def content_id_sql() -> str:
    """The SQL expression of `content_ids` over a table with the canonical event columns."""
    cols = ", ".join(f"coalesce(trim(CAST({c} AS VARCHAR)), chr(0))" for c in CONTENT_ID_COLUMNS)
    return f"substr(sha1(concat_ws(chr(31), {cols})), 1, 20)"


def blank(s: pd.Series) -> pd.Series:
    """Null or whitespace-only values."""
    return s.isna() | (s.astype("string").str.strip() == "")


def fill_event_ids(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Give every event without an id (null or blank) its content id; returns (events, how many)."""
    ids = events["event_id"] if "event_id" in events.columns else pd.Series(pd.NA, index=events.index)
    missing = blank(ids)
    n = int(missing.sum())
    if not n:
        return events, 0
    filled = ids.astype("string").where(~missing, content_ids(events[missing]))
    return events.assign(event_id=filled), n
