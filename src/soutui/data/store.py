"""Storage behind a URL: an explicit registry of backends, DuckDB embedded by default.

`duckdb:///abs/path.duckdb` (the default, under $SOUTUI_HOME) is one file and one writer;
`postgresql://user@host:port/db` is the production store many processes write at once
(docs/production.md). The contract and its errors are in `store_base`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from soutui.config import home_dir
from soutui.data.duckdb_store import DuckDBStore
from soutui.data.postgres_store import PostgresStore
from soutui.data.store_base import (
    QUARANTINE_COLUMNS,
    SHRINK_LIMIT,
    DatasetNotFound,
    ImportRefused,
    NameCollision,
    Store,
    StoreError,
    StoreLockedError,
    check_replacement,
)

__all__ = [
    "BACKENDS", "QUARANTINE_COLUMNS", "SHRINK_LIMIT", "DatasetNotFound", "DuckDBStore", "ImportRefused",
    "NameCollision", "PostgresStore", "Store", "StoreError", "StoreLockedError", "check_replacement",
    "default_store_url", "open_store",
]  # fmt: skip


def _duckdb_from_url(url: str, read_only: bool) -> Store:
    parsed = urlparse(url)
    path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    return DuckDBStore(path or ":memory:", read_only=read_only)


# scheme -> factory; add a backend by adding a line here.
BACKENDS: dict[str, Callable[[str, bool], Store]] = {
    "duckdb": _duckdb_from_url,
    "postgresql": PostgresStore.from_url,
    "postgres": PostgresStore.from_url,
}


def default_store_url() -> str:
    return f"duckdb://{home_dir() / 'soutui.duckdb'}"


def open_store(url: str | None = None, read_only: bool = False) -> Store:
    """Open the store at `url` (e.g. `duckdb:///abs/path.duckdb`, `duckdb://:memory:`).

    `read_only=True` for commands that only read: several readers can then share the
    file. A store held by a writer raises StoreLockedError naming the process.
    """
    url = url or default_store_url()
    scheme = urlparse(url).scheme
    if scheme not in BACKENDS:
        raise StoreError(f"unknown store URL scheme {scheme!r} in {url!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[scheme](url, read_only)
