"""The production store: PostgreSQL through psycopg 3 and a per-process connection pool.

Many processes (API workers, importers, trainers) share one database. Every dataset's tables
are rows keyed by `dataset` in fixed tables, so the schema is managed by versioned plain SQL
files (migrations/postgres/NNNN_*.sql, recorded in `soutui_schema_version`): a newer soutui
upgrades an existing database in place, never dropping rows.

Concurrency, by PostgreSQL's MVCC rather than file locks:
- live events are `INSERT ... ON CONFLICT (dataset, event_id) DO NOTHING`, in event-id order
  (so concurrent overlapping batches cannot deadlock): every event is stored once, whichever
  process posts it and however often;
- an import replaces a dataset in one transaction: readers see the old rows until it commits,
  and a failed import rolls back whole; imports (and forgets) of one dataset are serialised by
  an advisory lock, while readers and live appends never wait for them (appends only wait on an
  event id the import itself is writing);
- `forget_user` deletes at once and then VACUUMs the tables, so the rows are no longer readable
  anywhere in the database files' live pages (WAL and backups keep them until recycled:
  docs/production.md).
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from soutui.data.schema import TABLES, conform, fill_event_ids
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

MIGRATIONS = Path(__file__).parent / "migrations" / "postgres"
MIGRATION_LOCK = 0x50757475  # pg_advisory_xact_lock key: one migrating process at a time
POOL_MAX = int(os.environ.get("SOUTUI_PG_POOL_MAX", "4"))
CONNECT_TIMEOUT_S = 10
POOL_WAIT_S = 30
FORGET_WAIT_S = 3.0  # how long a forget waits for a running import of the same dataset
APPEND_WAIT_S = 5.0  # how long an append waits on event ids a running import is rewriting
_SQL_TYPES = {"string": "text", "Int64": "bigint", "Float64": "float8", "boolean": "boolean"}
_COLUMNS = {**{t: list(c) for t, c in TABLES.items()}, "quarantine": QUARANTINE_COLUMNS}

_pools: dict[tuple[int, str, bool], ConnectionPool] = {}
_pools_lock = threading.Lock()


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration, by version."""
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = re.match(r"(\d{4})_\w+\.sql$", path.name)
        if not m:
            raise StoreError(f"migration file {path.name} must be named NNNN_description.sql")
        out.append((int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    return out


def schema_version(con: psycopg.Connection[Any]) -> int:
    """The highest migration applied to the database (0 when it has no soutui schema)."""
    if con.execute("SELECT to_regclass('soutui_schema_version')").fetchone() == (None,):
        return 0
    row = con.execute("SELECT max(version) FROM soutui_schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def migrate(con: psycopg.Connection[Any], upto: int | None = None) -> list[int]:
    """Apply the migrations the database lacks (up to `upto`), all in one transaction.

    An upgrade applies whole or not at all; concurrent callers queue on an advisory lock, so two
    processes starting at once apply each file exactly once. Returns the versions applied now.
    """
    applied_now = []
    known = migration_files()
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        con.execute(
            "CREATE TABLE IF NOT EXISTS soutui_schema_version (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = schema_version(con)
        newest = known[-1][0] if known else 0
        if current > newest:
            raise StoreError(
                f"the database's soutui schema is version {current}, newer than this soutui knows ({newest}); "
                "upgrade soutui before using this database"
            )
        for version, name, sql in known:
            if version <= current or (upto is not None and version > upto):
                continue
            try:
                con.execute(sql.encode("utf-8"))
            except psycopg.Error as exc:
                raise StoreError(
                    f"migration {name} failed ({str(exc).strip().splitlines()[0]}); nothing was changed, "
                    f"the database stays at schema version {current}"
                ) from exc
            con.execute("INSERT INTO soutui_schema_version (version, name) VALUES (%s, %s)", [version, name])
            applied_now.append(version)
    return applied_now


def _connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True, **kwargs)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"cannot connect to the PostgreSQL store {redact(url)}: {first}; is the server running, "
            "and does the database exist (createdb)?"
        ) from exc


def _pool(url: str, read_only: bool) -> ConnectionPool:
    """This process's pool for `url` (a forked worker makes its own: the key holds the pid)."""
    key = (os.getpid(), url, read_only)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            options = "-c default_transaction_read_only=on" if read_only else ""
            pool = ConnectionPool(
                url, min_size=1, max_size=max(1, POOL_MAX), open=True, name=f"soutui-{os.getpid()}",
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, "options": options},
            )  # fmt: skip
            _pools[key] = pool
        return pool


def close_pools() -> None:
    """Close this process's pools (at exit, and in tests before dropping a database)."""
    with _pools_lock:
        mine = [k for k in _pools if k[0] == os.getpid()]
        pools = [_pools.pop(k) for k in mine]
    for pool in pools:
        pool.close()


atexit.register(close_pools)


# COPY as CSV, written by pandas and parsed by pyarrow (no Python loop per row): every value quoted,
# NULL as \N, so an empty string stays an empty string. Reads tell the quoted string "\N" from NULL;
# an import stores a value that is exactly "\N" as NULL (FORCE_NULL: pandas quotes its NULL marker too).
_CSV_OPTS = "FORMAT csv, NULL '\\N'"


def _to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, header=False, na_rep="\\N", quoting=csv.QUOTE_ALL, lineterminator="\n").encode()


_ARROW = {"string": pa.string(), "Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_()}
_PANDAS = {pa.string(): pd.StringDtype(), pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
           pa.bool_(): pd.BooleanDtype()}  # fmt: skip


def _from_csv(data: bytes, table: str) -> pd.DataFrame:
    """PostgreSQL's CSV (every value quoted, NULL an unquoted \\N) as a frame of the schema's dtypes."""
    cols = _COLUMNS[table]
    types = TABLES.get(table, dict.fromkeys(QUARANTINE_COLUMNS, "string"))
    if not data:
        return pd.DataFrame({c: pd.Series(dtype=types[c]) for c in cols})
    parsed = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=cols),
        convert_options=pacsv.ConvertOptions(
            column_types={c: _ARROW[types[c]] for c in cols}, null_values=["\\N"], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"],
        ),
    )  # fmt: skip
    return parsed.to_pandas(types_mapper=_PANDAS.get)


class PostgresStore(Store):
    """Datasets as rows of fixed tables (`soutui_events` ...) in one PostgreSQL database."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        if (os.getpid(), url, read_only) not in _pools:
            # first open in this process: a clear error when unreachable, before the pool retries in the background
            with _connect(url) as con:
                if not read_only:
                    migrate(con)  # a read-only open of a database nobody migrated yet is an empty store
            self._pool = _pool(url, read_only)
            return
        self._pool = _pool(url, read_only)  # later opens (the server's store sync) reuse pooled connections
        if not read_only:
            with self._con() as con:
                if schema_version(con) != migration_files()[-1][0]:
                    migrate(con)  # another release touched the schema meanwhile: upgrade, or refuse a newer one

    @classmethod
    def from_url(cls, url: str, read_only: bool) -> PostgresStore:
        return cls(url, read_only=read_only)

    @contextmanager
    def _con(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            con = self._pool.getconn(timeout=POOL_WAIT_S)
        except PoolTimeout as exc:
            raise StoreError(
                f"no connection to the PostgreSQL store {redact(self.url)} within {POOL_WAIT_S} s "
                f"(server down, or all {self._pool.max_size} pooled connections busy: SOUTUI_PG_POOL_MAX)"
            ) from exc
        try:
            yield con
        finally:
            self._pool.putconn(con)  # the pool rolls back a transaction left open by an error

    def _exists(self, con: psycopg.Connection[Any], ds: str) -> bool:
        return con.execute("SELECT 1 FROM soutui_datasets WHERE dataset = %s", [ds]).fetchone() is not None

    def _missing(self, name: str) -> DatasetNotFound:
        return DatasetNotFound(
            f"dataset {name!r} is not in the store {redact(self.url)}; import it first "
            f"(soutui data import {name} ...). Present: {self.datasets() or 'none'}"
        )

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
        frames["events"] = frames["events"].drop_duplicates("event_id", ignore_index=True)
        frames_all = {**frames, "quarantine": q}
        with self._con() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"soutui_dataset:{ds}"])
            self._check_write(con, name, ds, {t: len(f) for t, f in frames.items()}, replace, rows_read)
            con.execute(
                "INSERT INTO soutui_datasets (dataset, name) VALUES (%s, %s) "
                "ON CONFLICT (dataset) DO UPDATE SET name = EXCLUDED.name",
                [ds, name],
            )
            for table, df in frames_all.items():
                con.execute(f"DELETE FROM soutui_{table} WHERE dataset = %s", [ds])
                self._copy(con, ds, table, df)
            _put_meta(con, ds, name, meta)

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
        frames, _ = incoming_frames({t: f for t, f in tables.items() if t != "events"}, None)
        ev_chunks, q_chunks = conformed_chunks(events, quarantine)
        kept = {"items": len(frames["items"]), "users": len(frames["users"]), "events": kept_events}
        with self._con() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"soutui_dataset:{ds}"])
            self._check_write(con, name, ds, kept, replace, rows_read)
            con.execute(
                "INSERT INTO soutui_datasets (dataset, name) VALUES (%s, %s) "
                "ON CONFLICT (dataset) DO UPDATE SET name = EXCLUDED.name",
                [ds, name],
            )
            chunked: dict[str, Iterable[pd.DataFrame]] = {
                "items": [frames["items"]], "users": [frames["users"]], "events": ev_chunks, "quarantine": q_chunks,
            }  # fmt: skip
            for table, chunks in chunked.items():
                con.execute(f"DELETE FROM soutui_{table} WHERE dataset = %s", [ds])
                n = 0
                for df in chunks:
                    self._copy(con, ds, table, df)
                    n += len(df)
                if table == "events" and n != kept_events:  # raising rolls the whole write back
                    raise StoreError(f"dataset {name!r}: {n:,} events written where {kept_events:,} were announced")
            _put_meta(con, ds, name, meta)

    def _copy(self, con: psycopg.Connection[Any], ds: str, table: str, df: pd.DataFrame) -> None:
        """COPY `df` into `soutui_<table>` (CSV written by pandas: C speed, no Python loop per row)."""
        data = _to_csv(pd.concat([pd.Series(ds, index=df.index, name="dataset"), df], axis=1))
        if table != "events":
            self._copy_into(con, f"soutui_{table}", table, data)
            return
        try:
            with con.transaction():  # a savepoint: the fast path, straight into the table
                self._copy_into(con, "soutui_events", table, data)
        except psycopg.errors.UniqueViolation:
            # a live append committed one of these event ids after our DELETE: keep it once
            cols = ", ".join(_COLUMNS[table])
            con.execute(
                "CREATE TEMP TABLE IF NOT EXISTS soutui_incoming_events "
                "(LIKE soutui_events INCLUDING IDENTITY) ON COMMIT DELETE ROWS"
            )
            self._copy_into(con, "soutui_incoming_events", table, data)
            con.execute(
                f"INSERT INTO soutui_events (dataset, {cols}) SELECT dataset, {cols} FROM soutui_incoming_events "
                "ORDER BY pos ON CONFLICT (dataset, event_id) DO NOTHING"
            )

    def _copy_into(self, con: psycopg.Connection[Any], target: str, table: str, data: bytes) -> None:
        cols = ", ".join(f'"{c}"' for c in _COLUMNS[table])
        sql = f"COPY {target} (dataset, {cols}) FROM STDIN ({_CSV_OPTS}, FORCE_NULL ({cols}))"
        with con.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[arg-type]
            copy.write(data)

    def _check_write(
        self,
        con: psycopg.Connection[Any],
        name: str,
        ds: str,
        kept: dict[str, int],
        replace: bool,
        rows_read: dict[str, int] | None,
    ) -> None:
        row = con.execute("SELECT name FROM soutui_datasets WHERE dataset = %s", [ds]).fetchone()
        stored = None
        if row is not None:
            if row[0] != name:
                raise NameCollision(
                    f"dataset name {name!r} collides with the stored dataset {row[0]!r} (both are stored as "
                    f"{ds!r}); use --name {row[0]} to replace it, or choose another name"
                )
            count = con.execute("SELECT count(*) FROM soutui_events WHERE dataset = %s", [ds]).fetchone()
            stored = int(count[0]) if count else 0
        if not replace:
            check_replacement(name, kept, rows_read, stored)

    def read(self, name: str, table: str) -> pd.DataFrame:
        ds = check_name(name)
        if table not in _COLUMNS:
            raise ValueError(f"unknown table {table!r}")
        cols = _COLUMNS[table]
        quoted = ", ".join(f'"{c}"' for c in cols)
        select = f"SELECT {quoted} FROM soutui_{table} WHERE dataset = {{}} ORDER BY pos"
        try:
            with self._con() as con, con.transaction(), con.cursor() as cur:
                if not self._exists(con, ds):
                    raise self._missing(name)
                query = pgsql.SQL(f"COPY ({select}) TO STDOUT ({_CSV_OPTS}, FORCE_QUOTE *)")
                with cur.copy(query.format(pgsql.Literal(ds))) as copy:
                    data = b"".join(bytes(chunk) for chunk in copy)
        except psycopg.errors.UndefinedTable:  # read-only open of a database no soutui has written
            raise self._missing(name) from None
        return _from_csv(data, table)

    def append_events(self, name: str, events: pd.DataFrame) -> int:
        self._check_writable("appending events")
        ds = check_name(name)
        df = fill_event_ids(conform(events, "events"))[0]
        df = df.drop_duplicates("event_id").sort_values("event_id", ignore_index=True)  # one lock order: no deadlock
        cols = list(TABLES["events"])
        arrays = [[None if pd.isna(v) else v for v in df[c].tolist()] for c in cols]
        unnest = ", ".join(f"%s::{_SQL_TYPES[TABLES['events'][c]]}[]" for c in cols)
        sql = (
            f"INSERT INTO soutui_events (dataset, {', '.join(cols)}) SELECT %s, * FROM unnest({unnest}) "
            "ON CONFLICT (dataset, event_id) DO NOTHING"
        )
        for attempt in range(5):
            try:
                with self._con() as con, con.transaction():
                    if not self._exists(con, ds):
                        raise self._missing(name)
                    # an event id a running import is rewriting waits for that import: a moment only
                    con.execute(f"SET LOCAL lock_timeout = '{int(APPEND_WAIT_S * 1000)}ms'")
                    with con.cursor() as cur:
                        cur.execute(sql, [ds, *arrays])
                        return int(cur.rowcount)
            except psycopg.errors.DeadlockDetected:  # not expected (sorted ids); retried, the insert is idempotent
                time.sleep(0.05 * (attempt + 1))
            except psycopg.errors.LockNotAvailable as exc:
                raise StoreLockedError(
                    f"dataset {name!r} is being imported into {redact(self.url)} and these events touch "
                    "rows it rewrites; nothing was appended, retry when the import finishes"
                ) from exc
        raise StoreError(f"could not append events to {name!r}: repeated deadlocks")

    def forget_user(self, name: str, user_id: str, also: Sequence[str] = ()) -> dict[str, int]:
        self._check_writable("forgetting a user")
        ds = check_name(name)
        values = {v.strip() for v in (user_id, *also) if v and v.strip()}
        try:
            with self._con() as con:
                with con.transaction():
                    if not self._exists(con, ds):
                        raise DatasetNotFound(f"dataset {name!r} is not in the store {redact(self.url)}")
                    if not values:
                        raise StoreError("forget_user needs a non-blank user id")
                    # a running import of this dataset would bring the user back on commit: wait for it,
                    # a moment only (a server's DELETE /v1/users answers 503 "retry" instead of hanging)
                    con.execute(f"SET LOCAL lock_timeout = '{int(FORGET_WAIT_S * 1000)}ms'")
                    con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"soutui_dataset:{ds}"])
                    counts = self._delete_user(con, ds, user_id, values)
                    self._record_forget(con, ds, user_id, counts)
                con.execute("VACUUM (SKIP_LOCKED) soutui_events, soutui_users, soutui_quarantine")  # prune now
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreLockedError(
                f"dataset {name!r} is being imported into {redact(self.url)}; nothing was deleted, "
                "retry when the import finishes"
            ) from exc
        return counts

    def _record_forget(self, con: psycopg.Connection[Any], ds: str, user_id: str, counts: dict[str, int]) -> None:
        now = int(time.time())
        salt, digest = salted_hash(user_id)
        con.execute(
            "INSERT INTO soutui_forget_audit VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [ds, salt, digest, counts["events"], counts["quarantine"], counts["users"], now],
        )
        con.execute("INSERT INTO soutui_pending_forget VALUES (%s, %s, %s, %s)", [ds, salt, digest, now])

    def _delete_user(self, con: psycopg.Connection[Any], ds: str, user_id: str, values: set[str]) -> dict[str, int]:
        counts = {}
        for table in ("events", "users"):
            cur = con.execute(f"DELETE FROM soutui_{table} WHERE dataset = %s AND user_id = %s", [ds, user_id])
            counts[table] = int(cur.rowcount)
        rows = con.execute("SELECT pos, data FROM soutui_quarantine WHERE dataset = %s", [ds]).fetchall()
        hit = [int(pos) for pos, data in rows if holds_value(data, values)]
        if hit:
            con.execute("DELETE FROM soutui_quarantine WHERE dataset = %s AND pos = ANY(%s)", [ds, hit])
        counts["quarantine"] = len(hit)
        return counts

    def pending_forget(self, name: str) -> list[dict[str, Any]]:
        ds = check_name(name)
        rows = self._query(
            "SELECT subject_hash, salt, requested_at FROM soutui_pending_forget WHERE dataset = %s "
            "ORDER BY requested_at",
            [ds],
        )
        return [{"subject_hash": str(h), "salt": str(s), "requested_at": int(t)} for h, s, t in rows]

    def clear_pending_forget(self, name: str, before_ts: int) -> int:
        self._check_writable("clearing forget requests")
        ds = check_name(name)
        with self._con() as con:
            cur = con.execute(
                "DELETE FROM soutui_pending_forget WHERE dataset = %s AND requested_at < %s", [ds, before_ts]
            )
            return int(cur.rowcount)

    def datasets(self) -> list[str]:
        return sorted(r[0] for r in self._query("SELECT dataset FROM soutui_datasets"))

    def meta(self, name: str) -> dict[str, str]:
        rows = self._query("SELECT key, value FROM soutui_meta WHERE dataset = %s", [check_name(name)])
        return {str(k): str(v) for k, v in rows}

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read; none when the database has no soutui tables yet (a read-only open)."""
        try:
            with self._con() as con:
                return con.execute(sql, params).fetchall()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return []

    def close(self) -> None:
        """Connections go back to this process's pool (closed at exit or by `close_pools`)."""


def _put_meta(con: Any, ds: str, name: str, meta: dict[str, str] | None) -> None:
    """Replace the dataset's meta rows (inside the caller's transaction); `name` is always stored."""
    con.execute("DELETE FROM soutui_meta WHERE dataset = %s", [ds])
    with con.cursor() as cur:
        cur.executemany(
            "INSERT INTO soutui_meta (dataset, key, value) VALUES (%s, %s, %s)",
            [(ds, k, str(v)) for k, v in {**(meta or {}), "name": name}.items()],
        )
