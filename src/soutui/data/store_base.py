"""The store contract every backend implements, its errors and the rules every backend shares.

A store holds named datasets; each dataset is the three schema tables plus its
quarantine. Writing a dataset is one transaction that replaces it whole, so a
re-import is idempotent and a failed import leaves the store as it was. A write that
would keep no rows, or drop more than half of the stored events, is refused unless the
caller says `replace=True`: a broken file must not silently wipe a good dataset.

Every stored event has an id (blank ones get a content hash, `schema.content_ids`), so
de-duplication of live events never meets a NULL. `forget_user` deletes one user at once.
The backends: `duckdb_store.DuckDBStore` (embedded, the default) and
`postgres_store.PostgresStore` (many processes); `store.open_store` picks one by URL scheme.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd

from soutui.config import UserError
from soutui.data.schema import QUARANTINE_COLUMNS, TABLES, conform, fill_event_ids

SHRINK_LIMIT = 0.5  # a re-import keeping fewer than this share of the stored events is refused


class StoreError(UserError, ValueError):
    """A store problem the user can fix (busy, missing, refused write); the message says how."""


class DatasetNotFound(StoreError, KeyError):
    """No dataset of that name in the store (a KeyError too, for callers that catch that)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreLockedError(StoreError):
    """Another process holds the store open for writing."""


class ImportRefused(StoreError):
    """The new data would wipe or shrink a dataset; pass replace=True (--replace) to do it anyway."""


class NameCollision(StoreError):
    """Two names that normalise to the same stored dataset (`my-shop`, `my_shop`)."""


class Store(ABC):
    """The small interface every storage backend implements."""

    read_only: bool = False

    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreError(f"the store was opened read-only; {what} needs a read-write open_store(url)")

    @abstractmethod
    def write_dataset(
        self,
        name: str,
        tables: dict[str, pd.DataFrame],
        quarantine: pd.DataFrame | None = None,
        meta: dict[str, str] | None = None,
        replace: bool = False,
        rows_read: dict[str, int] | None = None,
    ) -> None:
        """Atomically replace dataset `name` with `tables` (keys: items, users, events).

        Refused (ImportRefused) unless `replace`: no rows kept, or events read but none
        kept (`rows_read`), or fewer than half of the stored events kept. Always refused: a
        name that normalises to an existing dataset stored under a different name.
        """

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
        """`write_dataset` with the events and the quarantine given in chunks (an import larger than memory).

        The same single transaction, refusals and stored rows as `write_dataset` of the chunks put
        together; `tables` holds items and users, `kept_events` how many events the chunks hold (the
        refusal checks run before the first chunk is read). This default gathers the chunks and calls
        `write_dataset`; a backend that writes chunk by chunk in its transaction overrides it, so
        memory is bounded by one chunk.
        """
        evs, qs = list(events), list(quarantine)
        tables = {**tables, "events": pd.concat(evs, ignore_index=True) if evs else pd.DataFrame()}
        q = pd.concat(qs, ignore_index=True) if qs else None
        self.write_dataset(name, tables, quarantine=q, meta=meta, replace=replace, rows_read=rows_read)

    @abstractmethod
    def read(self, name: str, table: str) -> pd.DataFrame:
        """One table of a dataset (`items`, `users`, `events`, `quarantine`)."""

    @abstractmethod
    def append_events(self, name: str, events: pd.DataFrame) -> int:
        """Insert events whose event_id is new; return how many were new (blank ids get content ids)."""

    @abstractmethod
    def forget_user(self, name: str, user_id: str, also: Sequence[str] = ()) -> dict[str, int]:
        """Delete user `user_id` (as stored, i.e. the pseudonym) from dataset `name` now.

        Deletes the user's events, users row and every quarantine row holding `user_id` or one
        of `also` as a value; records an audit row (salted hash, never the id) and a pending
        rebuild. Returns counts by table.
        """

    @abstractmethod
    def pending_forget(self, name: str) -> list[dict[str, Any]]:
        """Forget requests not yet honoured by a rebuilt bundle (salted hashes, times)."""

    @abstractmethod
    def clear_pending_forget(self, name: str, before_ts: int) -> int:
        """A bundle built at `before_ts` honours the requests made before it; returns how many."""

    @abstractmethod
    def datasets(self) -> list[str]: ...

    @abstractmethod
    def meta(self, name: str) -> dict[str, str]: ...

    @abstractmethod
    def close(self) -> None: ...


def incoming_frames(
    tables: dict[str, pd.DataFrame], quarantine: pd.DataFrame | None
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """What every backend's write_dataset stores: each table conformed to its schema, blank event
    ids filled by content, and the quarantine as strings in its fixed columns."""
    frames = {t: conform(tables.get(t, pd.DataFrame()), t) for t in TABLES}
    frames["events"] = fill_event_ids(frames["events"])[0]
    q = quarantine if quarantine is not None else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return frames, q.reindex(columns=QUARANTINE_COLUMNS).astype("string")


def conformed_chunks(
    events: Iterable[pd.DataFrame], quarantine: Iterable[pd.DataFrame]
) -> tuple[Iterator[pd.DataFrame], Iterator[pd.DataFrame]]:
    """`incoming_frames` chunk by chunk, for `Store.write_dataset_chunks`."""
    ev = (fill_event_ids(conform(c, "events"))[0] for c in events)
    q = (c.reindex(columns=QUARANTINE_COLUMNS).astype("string") for c in quarantine)
    return ev, q


def check_name(name: str) -> str:
    if not name.replace("-", "_").replace("_", "").isalnum():
        raise StoreError(f"dataset name {name!r} must be letters, digits, '-' or '_'")
    return name.replace("-", "_")


def check_replacement(
    name: str, kept: dict[str, int], rows_read: dict[str, int] | None, stored_events: int | None
) -> None:
    """Raise ImportRefused when a write would wipe or shrink dataset `name` (see `Store.write_dataset`)."""
    events = kept.get("events", 0)
    read = (rows_read or {}).get("events", 0)
    hint = "fix the input, or pass --replace to replace the dataset anyway"
    if read and not events:
        raise ImportRefused(
            f"refusing to write dataset {name!r}: the import keeps 0 of {read:,} events read"
            + (f" (the store keeps its {stored_events:,} events)" if stored_events else "")
            + f"; {hint}"
        )
    if sum(kept.values()) == 0:
        raise ImportRefused(f"refusing to write dataset {name!r}: the import keeps 0 rows; {hint}")
    if stored_events and events < SHRINK_LIMIT * stored_events:
        raise ImportRefused(
            f"refusing to replace dataset {name!r}: it would drop {stored_events - events:,} of its "
            f"{stored_events:,} stored events ({1 - events / stored_events:.0%}), keeping {events:,}; {hint}"
        )


def salted_hash(value: str) -> tuple[str, str]:
    salt = secrets.token_hex(16)
    return salt, hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def holds_value(data: str, values: set[str]) -> bool:
    """Whether a quarantined row (JSON object text) has one of `values` as a field value."""
    try:
        rec = json.loads(data)
    except (TypeError, ValueError):
        return any(v in str(data) for v in values)
    return isinstance(rec, dict) and any(str(v).strip() in values for v in rec.values() if v is not None)
