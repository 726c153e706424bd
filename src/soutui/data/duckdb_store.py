"""The embedded default store: datasets as tables `<dataset>__<table>` in one DuckDB file.

One process writes at a time (DuckDB's file lock); readers open it read-only and share it.
`forget_user` rewrites the file, so the deleted values do not linger in free blocks.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from soutui.data.schema import TABLES, conform, content_id_sql, fill_event_ids
from soutui.data.store_base import (
    QUARANTINE_COLUMNS,
    DatasetNotFound,
    NameCollision,
    Store,
    StoreError,
    StoreLockedError,
    check_name,
    check_replacement,
    conformed_chunks,
    holds_value,
    incoming_frames,
    salted_hash,
)


def _holder(message: str) -> str:
    """'PID 123 (soutui train ...)' from a DuckDB lock error, as far as the message and /proc tell."""
    m = re.search(r"PID (\d+)", message)
    if not m:
        return "another process"
    pid = m.group(1)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = [Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace")
                 for i, a in enumerate(argv) if a]  # fmt: skip
        return f"process {pid} ({' '.join(' '.join(words).split())[:120]})"  # one line, even for `-c` scripts
    except OSError:
        return f"process {pid}"


class DuckDBStore(Store):
    """Datasets as tables `<dataset>__<table>` in one DuckDB file (or in memory)."""

    def __init__(self, path: str, read_only: bool = False) -> None:
        if path != ":memory:":
            if read_only and not Path(path).is_file():
                raise StoreError(f"no store at {path}; import a dataset first (soutui data import ...)")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.read_only = read_only and path != ":memory:"  # a private in-memory store has no one to share with
        self._con = self._connect()
        self._lock = threading.Lock()
        if not self.read_only:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS soutui_meta (dataset VARCHAR, key VARCHAR, value VARCHAR)"
            )
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS soutui_forget_audit (dataset VARCHAR, salt VARCHAR, "
                "subject_hash VARCHAR, events BIGINT, quarantine BIGINT, users BIGINT, forgotten_at BIGINT)"
            )
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS soutui_pending_forget "
                "(dataset VARCHAR, salt VARCHAR, subject_hash VARCHAR, requested_at BIGINT)"
            )
            for ds in self.datasets():
                self._repair_ids(ds)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(self.path, read_only=self.read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"cannot open the store {self.path}: {str(exc).splitlines()[0]}") from exc
            raise StoreLockedError(
                f"the store {self.path} is in use by {_holder(str(exc))}; wait for it to finish "
                "(or stop it), or point this command at another store with --store / $SOUTUI_HOME"
            ) from exc

    def _table_exists(self, table: str) -> bool:
        q = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
        return bool(self._con.execute(q, [table]).fetchall()[0][0])

    def _repair_ids(self, ds: str) -> int:
        """Stored events without an id (older stores kept NULLs) get their content id, in place."""
        t = f'"{ds}__events"'
        blank = "event_id IS NULL"
        n = self._con.execute(f"SELECT count(*) FROM {t} WHERE {blank}").fetchall()[0][0]
        if n:
            self._con.execute(f"UPDATE {t} SET event_id = {content_id_sql()} WHERE {blank}")
        return int(n)

    def write_dataset(
        self,
        name: str,
        tables: dict[str, pd.DataFrame],
        quarantine: pd.DataFrame | None = None,
        meta: dict[str, str] | None = None,
        replace: bool = False,
        rows_read: dict[str, int] | None = None,
    ) -> None:
        self._check_writable("writing a dataset")
        ds = check_name(name)
        frames, q = incoming_frames(tables, quarantine)
        frames_all: dict[str, pd.DataFrame] = {**frames, "quarantine": q}
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                self._check_write(name, ds, {t: len(f) for t, f in frames.items()}, replace, rows_read)
                for table, df in frames_all.items():
                    con.register("_incoming", df)
                    con.execute(f'CREATE OR REPLACE TABLE "{ds}__{table}" AS SELECT * FROM _incoming')
                    con.unregister("_incoming")
                self._put_meta(ds, name, meta)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def write_dataset_chunks(
        self,
        name: str,
        tables: dict[str, pd.DataFrame],
        events: Iterable[pd.DataFrame],
        quarantine: Iterable[pd.DataFrame],
        kept_events: int,
        meta: dict[str, str] | None = None,
        replace: bool = False,
        rows_read: dict[str, int] | None = None,
    ) -> None:
        self._check_writable("writing a dataset")
        ds = check_name(name)
        frames, empty_q = incoming_frames({t: f for t, f in tables.items() if t != "events"}, None)
        ev_chunks, q_chunks = conformed_chunks(events, quarantine)
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                kept = {"items": len(frames["items"]), "users": len(frames["users"]), "events": kept_events}
                self._check_write(name, ds, kept, replace, rows_read)
                for table in ("items", "users"):
                    self._put_chunks(ds, table, [frames[table]], frames[table])
                n = self._put_chunks(ds, "events", ev_chunks, frames["events"])
                if n != kept_events:
                    raise StoreError(f"dataset {name!r}: {n:,} events written where {kept_events:,} were announced")
                self._put_chunks(ds, "quarantine", q_chunks, empty_q.reindex(columns=QUARANTINE_COLUMNS))
                self._put_meta(ds, name, meta)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _put_meta(self, ds: str, name: str, meta: dict[str, str] | None) -> None:
        """Replace the dataset's meta rows (inside the caller's transaction); `name` is always stored."""
        self._con.execute("DELETE FROM soutui_meta WHERE dataset = ?", [ds])
        for k, v in {**(meta or {}), "name": name}.items():
            self._con.execute("INSERT INTO soutui_meta VALUES (?, ?, ?)", [ds, k, str(v)])

    def _put_chunks(self, ds: str, table: str, chunks: Iterable[pd.DataFrame], empty: pd.DataFrame) -> int:
        """Replace table `ds__table` by the chunks (`empty`: its columns when there are none); rows written."""
        n, verb = 0, f'CREATE OR REPLACE TABLE "{ds}__{table}" AS'
        for df in chunks:
            self._con.register("_incoming", df)
            self._con.execute(f"{verb} SELECT * FROM _incoming")
            self._con.unregister("_incoming")
            n, verb = n + len(df), f'INSERT INTO "{ds}__{table}"'
        if verb.startswith("CREATE"):
            self._con.register("_incoming", empty.iloc[:0])
            self._con.execute(f"{verb} SELECT * FROM _incoming")
            self._con.unregister("_incoming")
        return n

    def _check_write(
        self, name: str, ds: str, kept: dict[str, int], replace: bool, rows_read: dict[str, int] | None
    ) -> None:
        if not self._table_exists(f"{ds}__events"):
            stored = None
        else:
            rows = self._con.execute(
                "SELECT value FROM soutui_meta WHERE dataset = ? AND key = 'name'", [ds]
            ).fetchall()
            row = rows[0] if rows else None
            if row is not None and row[0] != name:
                raise NameCollision(
                    f"dataset name {name!r} collides with the stored dataset {row[0]!r} (both are stored as "
                    f"{ds!r}); use --name {row[0]} to replace it, or choose another name"
                )
            stored = int(self._con.execute(f'SELECT count(*) FROM "{ds}__events"').fetchall()[0][0])
        if not replace:
            check_replacement(name, kept, rows_read, stored)

    def read(self, name: str, table: str) -> pd.DataFrame:
        ds = check_name(name)
        if table not in (*TABLES, "quarantine"):
            raise ValueError(f"unknown table {table!r}")
        if name not in self.datasets() and ds not in self.datasets():
            raise DatasetNotFound(
                f"dataset {name!r} is not in the store {self.path}; import it first "
                f"(soutui data import {name} ...). Present: {self.datasets() or 'none'}"
            )
        with self._lock:
            df = self._con.execute(f'SELECT * FROM "{ds}__{table}"').df()
        if table in TABLES:
            df = df.astype({c: t for c, t in TABLES[table].items() if c in df.columns})
        return df

    def append_events(self, name: str, events: pd.DataFrame) -> int:
        self._check_writable("appending events")
        ds = check_name(name)
        df = fill_event_ids(conform(events, "events"))[0]
        t = f'"{ds}__events"'
        if not self._table_exists(f"{ds}__events"):
            raise DatasetNotFound(f"dataset {name!r} is not in the store {self.path}; import it first")
        with self._lock:
            con = self._con
            con.register("_incoming", df)
            try:
                con.execute("BEGIN TRANSACTION")
                self._repair_ids(ds)
                before = con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                con.execute(  # anti-join: NULL-safe, unlike NOT IN (SELECT ...)
                    f"INSERT INTO {t} SELECT DISTINCT ON (i.event_id) i.* FROM _incoming i "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {t} e WHERE e.event_id = i.event_id)"
                )
                after = con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_incoming")
        return int(after - before)

    def forget_user(self, name: str, user_id: str, also: Sequence[str] = ()) -> dict[str, int]:
        self._check_writable("forgetting a user")
        ds = check_name(name)
        if ds not in self.datasets():
            raise DatasetNotFound(f"dataset {name!r} is not in the store {self.path}")
        values = {v.strip() for v in (user_id, *also) if v and v.strip()}
        if not values:
            raise StoreError("forget_user needs a non-blank user id")
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                counts = self._delete_user(ds, user_id, values)
                now = int(time.time())
                salt, digest = salted_hash(user_id)
                con.execute(
                    "INSERT INTO soutui_forget_audit VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [ds, salt, digest, counts["events"], counts["quarantine"], counts["users"], now],
                )
                con.execute("INSERT INTO soutui_pending_forget VALUES (?, ?, ?, ?)", [ds, salt, digest, now])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._compact()
        return counts

    def _delete_user(self, ds: str, user_id: str, values: set[str]) -> dict[str, int]:
        con = self._con
        counts = {}
        for table in ("events", "users"):
            t = f'"{ds}__{table}"'
            n = con.execute(f"SELECT count(*) FROM {t} WHERE user_id = ?", [user_id]).fetchall()[0][0]
            con.execute(f"DELETE FROM {t} WHERE user_id = ?", [user_id])
            counts[table] = int(n)
        qt = f'"{ds}__quarantine"'
        rows = con.execute(f"SELECT rowid, data FROM {qt}").fetchall()
        hit = [int(r) for r, data in rows if holds_value(data, values)]
        if hit:
            con.execute(f"DELETE FROM {qt} WHERE rowid IN (SELECT unnest(?::BIGINT[]))", [hit])
        counts["quarantine"] = len(hit)
        return counts

    def _compact(self) -> None:
        """Rewrite the file so deleted values leave no trace in freed blocks (DuckDB keeps them)."""
        if self.path == ":memory:":
            return
        fresh = f"{self.path}.compact"
        for leftover in (fresh, fresh + ".wal"):
            Path(leftover).unlink(missing_ok=True)
        db = self._con.execute("SELECT current_database()").fetchall()[0][0]
        self._con.execute(f"ATTACH '{fresh}' AS soutui_compact")
        self._con.execute(f'COPY FROM DATABASE "{db}" TO soutui_compact')
        self._con.execute("DETACH soutui_compact")
        self._con.close()
        os.replace(fresh, self.path)
        Path(self.path + ".wal").unlink(missing_ok=True)
        self._con = self._connect()

    def pending_forget(self, name: str) -> list[dict[str, Any]]:
        ds = check_name(name)
        if not self._table_exists("soutui_pending_forget"):
            return []
        with self._lock:
            df = self._con.execute(
                "SELECT subject_hash, salt, requested_at FROM soutui_pending_forget WHERE dataset = ? "
                "ORDER BY requested_at",
                [ds],
            ).df()
        return [
            {k: (int(v) if k == "requested_at" else str(v)) for k, v in r.items()}
            for r in df.to_dict("records")
        ]

    def clear_pending_forget(self, name: str, before_ts: int) -> int:
        self._check_writable("clearing forget requests")
        ds = check_name(name)
        with self._lock:
            q = "FROM soutui_pending_forget WHERE dataset = ? AND requested_at < ?"
            n = self._con.execute(f"SELECT count(*) {q}", [ds, before_ts]).fetchall()[0][0]
            self._con.execute(f"DELETE {q}", [ds, before_ts])
        return int(n)

    def datasets(self) -> list[str]:
        with self._lock:
            rows = self._con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%\\_\\_events' ESCAPE '\\'"
            ).fetchall()
        return sorted(r[0][: -len("__events")] for r in rows)

    def meta(self, name: str) -> dict[str, str]:
        ds = check_name(name)
        with self._lock:
            rows = self._con.execute("SELECT key, value FROM soutui_meta WHERE dataset = ?", [ds]).fetchall()
        return dict(rows)

    def close(self) -> None:
        self._con.close()
