"""The canonical schema every importer writes and every later stage reads.

Three tables: items, users, events. Column order and dtypes are fixed here so a
DataFrame can be checked (`conform`) before it reaches the store.
"""

from __future__ import annotations

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
