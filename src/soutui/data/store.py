"""Storage behind a URL: an explicit registry of backends, DuckDB embedded by default.

A store holds named datasets; each dataset is the three schema tables plus its
quarantine. Writing a dataset is one transaction that replaces it whole, so a
re-import is idempotent and a failed import leaves the store as it was.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pandas as pd

from soutui.config import home_dir
from soutui.data.schema import TABLES, conform

QUARANTINE_COLUMNS = ["table", "row", "reason", "data"]


class Store(ABC):
    """The small interface every storage backend implements."""

    @abstractmethod
    def write_dataset(
        self,
        name: str,
        tables: dict[str, pd.DataFrame],
        quarantine: pd.DataFrame | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        """Atomically replace dataset `name` with `tables` (keys: items, users, events)."""

    @abstractmethod
    def read(self, name: str, table: str) -> pd.DataFrame:
        """One table of a dataset (`items`, `users`, `events`, `quarantine`)."""

    @abstractmethod
    def append_events(self, name: str, events: pd.DataFrame) -> int:
        """Insert events whose event_id is new; return how many were new."""

    @abstractmethod
    def datasets(self) -> list[str]: ...

    @abstractmethod
    def meta(self, name: str) -> dict[str, str]: ...

    @abstractmethod
    def close(self) -> None: ...


def _check_name(name: str) -> str:
    if not name.replace("-", "_").replace("_", "").isalnum():
        raise ValueError(f"dataset name {name!r} must be letters, digits, '-' or '_'")
    return name.replace("-", "_")


class DuckDBStore(Store):
    """Datasets as tables `<dataset>__<table>` in one DuckDB file (or in memory)."""

    def __init__(self, path: str, read_only: bool = False) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = duckdb.connect(path, read_only=read_only)
        self._lock = threading.Lock()
        if not read_only:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS soutui_meta (dataset VARCHAR, key VARCHAR, value VARCHAR)"
            )

    def write_dataset(self, name, tables, quarantine=None, meta=None):  # type: ignore[no-untyped-def]
        ds = _check_name(name)
        frames = {t: conform(tables.get(t, pd.DataFrame()), t) for t in TABLES}
        q = quarantine if quarantine is not None else pd.DataFrame(columns=QUARANTINE_COLUMNS)
        q = q.reindex(columns=QUARANTINE_COLUMNS).astype("string")
        frames_all: dict[str, pd.DataFrame] = {**frames, "quarantine": q}
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                for table, df in frames_all.items():
                    con.register("_incoming", df)
                    con.execute(f'CREATE OR REPLACE TABLE "{ds}__{table}" AS SELECT * FROM _incoming')
                    con.unregister("_incoming")
                con.execute("DELETE FROM soutui_meta WHERE dataset = ?", [ds])
                for k, v in (meta or {}).items():
                    con.execute("INSERT INTO soutui_meta VALUES (?, ?, ?)", [ds, k, str(v)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def read(self, name: str, table: str) -> pd.DataFrame:
        ds = _check_name(name)
        if table not in (*TABLES, "quarantine"):
            raise ValueError(f"unknown table {table!r}")
        if name not in self.datasets() and ds not in self.datasets():
            raise KeyError(
                f"dataset {name!r} is not in the store {self.path}; import it first "
                f"(soutui data import {name} ...). Present: {self.datasets() or 'none'}"
            )
        with self._lock:
            df = self._con.execute(f'SELECT * FROM "{ds}__{table}"').df()
        if table in TABLES:
            df = df.astype({c: t for c, t in TABLES[table].items() if c in df.columns})
        return df

    def append_events(self, name: str, events: pd.DataFrame) -> int:
        ds = _check_name(name)
        df = conform(events, "events")
        with self._lock:
            con = self._con
            con.register("_incoming", df)
            try:
                con.execute("BEGIN TRANSACTION")
                before = con.execute(f'SELECT count(*) FROM "{ds}__events"').fetchone()[0]  # type: ignore[index]
                con.execute(
                    f'INSERT INTO "{ds}__events" SELECT DISTINCT ON (event_id) * FROM _incoming '
                    f'WHERE event_id NOT IN (SELECT event_id FROM "{ds}__events")'
                )
                after = con.execute(f'SELECT count(*) FROM "{ds}__events"').fetchone()[0]  # type: ignore[index]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_incoming")
        return int(after - before)

    def datasets(self) -> list[str]:
        with self._lock:
            rows = self._con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%__events'"
            ).fetchall()
        return sorted(r[0][: -len("__events")] for r in rows)

    def meta(self, name: str) -> dict[str, str]:
        ds = _check_name(name)
        with self._lock:
            rows = self._con.execute("SELECT key, value FROM soutui_meta WHERE dataset = ?", [ds]).fetchall()
        return dict(rows)

    def close(self) -> None:
        self._con.close()


def _duckdb_from_url(url: str, read_only: bool) -> Store:
    parsed = urlparse(url)
    path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    return DuckDBStore(path or ":memory:", read_only=read_only)


# scheme -> factory; add a backend by adding a line here.
BACKENDS: dict[str, Callable[[str, bool], Store]] = {"duckdb": _duckdb_from_url}


def default_store_url() -> str:
    return f"duckdb://{home_dir() / 'soutui.duckdb'}"


def open_store(url: str | None = None, read_only: bool = False) -> Store:
    """Open the store at `url` (e.g. `duckdb:///abs/path.duckdb`, `duckdb://:memory:`)."""
    url = url or default_store_url()
    scheme = urlparse(url).scheme
    if scheme not in BACKENDS:
        raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[scheme](url, read_only)
